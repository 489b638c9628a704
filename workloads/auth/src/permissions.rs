//! What a principal may do: each role's permissions in its organisation's projects, narrowed for
//! a personal key to the key's scopes and projects.

use cairn_auth_client::{Permission, ProjectGrant, Role};

/// A project the user can see through a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub project_id: i64,
    pub organization_id: i64,
    pub role: Role,
}

/// The limits of a personal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimits<'a> {
    /// `None`: every project the user can read.
    pub project_ids: Option<&'a [i64]>,
    pub scopes: &'a [Permission],
}

/// The grants of a session (`key` = `None`) or of a personal key. Projects left without any
/// permission are not listed.
pub fn grants(memberships: &[Membership], key: Option<&KeyLimits<'_>>) -> Vec<ProjectGrant> {
    memberships
        .iter()
        .filter(|m| key.and_then(|k| k.project_ids).is_none_or(|ids| ids.contains(&m.project_id)))
        .filter_map(|m| {
            let permissions: Vec<Permission> =
                m.role.permissions().iter().copied().filter(|p| key.is_none_or(|k| k.scopes.contains(p))).collect();
            (!permissions.is_empty()).then_some(ProjectGrant {
                id: m.project_id,
                organization_id: m.organization_id,
                role: m.role,
                permissions,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn m(project_id: i64, organization_id: i64, role: Role) -> Membership {
        Membership { project_id, organization_id, role }
    }

    #[test]
    fn sessions_get_their_roles_permissions() {
        let ms = [m(1, 10, Role::Owner), m(2, 10, Role::Member), m(3, 20, Role::Viewer)];
        let g = grants(&ms, None);
        assert_eq!(g.len(), 3);
        // Deleting persons with their events is for owners and admins.
        assert_eq!(g[0].permissions, vec![QueryRead, InsightsWrite, PersonsDelete, EventsWrite]);
        assert_eq!(g[1].permissions, vec![QueryRead, InsightsWrite]);
        assert_eq!(g[2].permissions, vec![QueryRead]);
        assert_eq!((g[2].organization_id, g[2].role), (20, Role::Viewer));
    }

    #[test]
    fn personal_keys_narrow_to_scopes_and_projects() {
        let ms = [m(1, 10, Role::Member), m(2, 10, Role::Member), m(3, 20, Role::Viewer)];
        let read_only = KeyLimits { project_ids: None, scopes: &[QueryRead] };
        let g = grants(&ms, Some(&read_only));
        assert!(g.iter().all(|g| g.permissions == vec![QueryRead]));
        assert_eq!(g.len(), 3);

        let ids = [2, 3, 99];
        let write_only = KeyLimits { project_ids: Some(&ids), scopes: &[InsightsWrite] };
        let g = grants(&ms, Some(&write_only));
        // Project 1 is outside the key; project 3 is a viewer's, so nothing is left of the scope;
        // project 99 is not the user's at all.
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].id, g[0].permissions.clone()), (2, vec![InsightsWrite]));

        let nothing = KeyLimits { project_ids: Some(&[]), scopes: &[QueryRead, InsightsWrite] };
        assert!(grants(&ms, Some(&nothing)).is_empty());
    }
}
