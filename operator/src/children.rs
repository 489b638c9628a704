//! Writing a platform's children safely.
//!
//! Every write goes through [`Children`], which enforces two rules that server-side apply alone
//! does not:
//!
//! - **Only what the platform owns is changed or deleted.** An object with a child's name that
//!   is not controlled by this platform (another Helm release's Service, a hand-made HPA, a
//!   leftover of a platform of the same name that was deleted) is neither overwritten, adopted nor
//!   deleted: the write is refused with [`ChildError::Conflict`], which the status reports as
//!   `OwnershipConflict` and an Event names. Deletions carry the owned object's uid as a
//!   precondition, so an object re-created by someone else in between is never deleted.
//! - **Only the leader writes.** Each write checks [`Leadership`] first: a replica that lost its
//!   lease while stalled stops at its next write.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::crd::FIELD_MANAGER;
use crate::leader::Leadership;
use crate::resources::BuildError;

/// The field manager that holds a Deployment's `replicas` for the moment between the operator
/// letting go of it and the HorizontalPodAutoscaler taking it (see [`Children::hand_over_replicas`]).
pub const HANDOVER_MANAGER: &str = "cairn-operator-handover";

#[derive(Debug, Error)]
pub enum ChildError {
    #[error("{kind} {name} already exists and is not owned by this platform ({owner}); the operator leaves it alone")]
    Conflict { kind: String, name: String, owner: String },
    #[error("this operator replica no longer holds the leader lease; it stopped writing")]
    NotLeader,
    #[error("{kind} {name}: {source}")]
    Kube {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl ChildError {
    fn kube<K: Resource<DynamicType = ()>>(name: &str, source: kube::Error) -> Self {
        ChildError::Kube { kind: K::kind(&()).into_owned(), name: name.to_string(), source }
    }
}

/// Whether `meta` is controlled by the platform with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Who controls an object, for messages: `AnalyticsPlatform other (uid …)`, a Helm release, or
/// "no owner".
pub fn describe_owner(meta: &ObjectMeta) -> String {
    if let Some(o) = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        return format!("controlled by {} {} (uid {})", o.kind, o.name, o.uid);
    }
    let annotations = meta.annotations.as_ref();
    if let Some(release) = annotations.and_then(|a| a.get("meta.helm.sh/release-name")) {
        return format!("part of Helm release {release}");
    }
    match meta.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by")) {
        Some(m) => format!("managed by {m}, with no controller reference"),
        None => "no owner".into(),
    }
}

/// The writer of one platform's children in one namespace.
pub struct Children<'a> {
    client: &'a Client,
    ns: &'a str,
    uid: &'a str,
    leadership: &'a Leadership,
}

impl<'a> Children<'a> {
    pub fn new(client: &'a Client, ns: &'a str, uid: &'a str, leadership: &'a Leadership) -> Self {
        Self { client, ns, uid, leadership }
    }

    pub fn uid(&self) -> &str {
        self.uid
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.ns)
    }

    /// Refuses when this replica may not write.
    pub fn guard(&self) -> Result<(), ChildError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(ChildError::NotLeader)
        }
    }

    /// The object as it is, whoever owns it.
    pub async fn get_any<K>(&self, name: &str) -> Result<Option<K>, ChildError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.api::<K>().get_opt(name).await.map_err(|e| ChildError::kube::<K>(name, e))
    }

    /// The platform's child of this name: `None` when absent, a conflict when it exists and is not
    /// the platform's.
    pub async fn get<K>(&self, name: &str) -> Result<Option<K>, ChildError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        match self.get_any::<K>(name).await? {
            Some(obj) if !controlled_by(obj.meta(), self.uid) => Err(ChildError::Conflict {
                kind: K::kind(&()).into_owned(),
                name: name.to_string(),
                owner: describe_owner(obj.meta()),
            }),
            other => Ok(other),
        }
    }

    /// Server-side apply of a child whose current state was already read with [`Children::get`].
    pub async fn apply_checked<K>(&self, obj: &K) -> Result<K, ChildError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        self.guard()?;
        self.api::<K>()
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
            .await
            .map_err(|e| ChildError::kube::<K>(&name, e))
    }

    /// Server-side apply under the operator's field manager, taking back fields edited by hand —
    /// but only of an object that is absent or the platform's own.
    pub async fn apply<K>(&self, obj: &K) -> Result<K, ChildError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        self.get::<K>(&name).await?;
        self.apply_checked(obj).await
    }

    /// Deletes the platform's child of this name if there is one. An object of that name that is
    /// not the platform's is left alone (it is not in the way of anything the spec asks for).
    /// Returns whether something was deleted.
    pub async fn delete<K>(&self, name: &str) -> Result<bool, ChildError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let Some(obj) = self.get_any::<K>(name).await? else { return Ok(false) };
        if !controlled_by(obj.meta(), self.uid) {
            tracing::debug!(kind = %K::kind(&()), name, "not deleting an object the platform does not own");
            return Ok(false);
        }
        self.guard()?;
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: obj.meta().uid.clone(), resource_version: None }),
            ..DeleteParams::background()
        };
        match self.api::<K>().delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
            Err(e) => Err(ChildError::kube::<K>(name, e)),
        }
    }

    /// Creates a Secret that must never be overwritten once it exists (generated credentials).
    /// Returns the Secret as stored: the new one, or the one that was there.
    pub async fn create_secret(&self, secret: &Secret) -> Result<(Secret, bool), ChildError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.guard()?;
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match self.api::<Secret>().create(&params, secret).await {
            Ok(s) => Ok((s, true)),
            Err(kube::Error::Api(e)) if e.code == 409 => match self.get_any::<Secret>(&name).await? {
                Some(s) => Ok((s, false)),
                None => Err(ChildError::Kube { kind: "Secret".into(), name, source: kube::Error::Api(e) }),
            },
            Err(e) => Err(ChildError::kube::<Secret>(&name, e)),
        }
    }

    /// Hands a Deployment's `replicas` to its HorizontalPodAutoscaler without a dip.
    ///
    /// When the operator's applied configuration stops carrying `replicas`, server-side apply
    /// removes the field if no other manager owns it, and the API server defaults it to 1: a
    /// workload running 3 replicas would drop to 1 until the autoscaler reacts. So first a second
    /// field manager applies the current count (sharing ownership of the unchanged value), then the
    /// operator's own apply leaves the field out: the value stays, and the autoscaler's updates take
    /// it over from there. This is the transfer Kubernetes documents for HPAs.
    pub async fn hand_over_replicas(&self, name: &str, replicas: i32) -> Result<(), ChildError> {
        self.guard()?;
        let patch = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas}
        });
        self.api::<k8s_openapi::api::apps::v1::Deployment>()
            .patch(name, &PatchParams::apply(HANDOVER_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map(|_| ())
            .map_err(|e| ChildError::kube::<k8s_openapi::api::apps::v1::Deployment>(name, e))
    }
}

/// Whether the operator's own field manager (by server-side apply) owns `spec.replicas`.
pub fn operator_owns_replicas(meta: &ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference};
    use std::collections::BTreeMap;

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "cairn.dev/v1alpha1".into(),
            kind: "AnalyticsPlatform".into(),
            name: "demo".into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn only_a_controller_reference_with_our_uid_is_ours() {
        let mut meta = ObjectMeta::default();
        assert!(!controlled_by(&meta, "u1"));
        assert_eq!(describe_owner(&meta), "no owner");
        meta.owner_references = Some(vec![owner("u1", false)]);
        assert!(!controlled_by(&meta, "u1"), "an owner that is not the controller");
        meta.owner_references = Some(vec![owner("u2", true)]);
        assert!(!controlled_by(&meta, "u1"), "a platform of the same name, deleted and created again");
        assert!(describe_owner(&meta).contains("uid u2"));
        meta.owner_references = Some(vec![owner("u1", true)]);
        assert!(controlled_by(&meta, "u1"));
        let helm = ObjectMeta {
            annotations: Some(BTreeMap::from([("meta.helm.sh/release-name".to_string(), "web".to_string())])),
            ..Default::default()
        };
        assert_eq!(describe_owner(&helm), "part of Helm release web");
    }

    #[test]
    fn replicas_ownership_is_read_from_managed_fields() {
        let entry = |manager: &str, op: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let mut meta = ObjectMeta::default();
        assert!(!operator_owns_replicas(&meta));
        meta.managed_fields = Some(vec![
            entry(FIELD_MANAGER, "Apply", serde_json::json!({"f:spec": {"f:template": {}}})),
            entry("kube-controller-manager", "Update", serde_json::json!({"f:spec": {"f:replicas": {}}})),
        ]);
        assert!(!operator_owns_replicas(&meta));
        meta.managed_fields =
            Some(vec![entry(FIELD_MANAGER, "Apply", serde_json::json!({"f:spec": {"f:replicas": {}}}))]);
        assert!(operator_owns_replicas(&meta));
    }

    /// The API server side of a mocked client: answers each request with `respond`, records it.
    mod mocked {
        use http::{Request, Response};
        use kube::client::Body;

        pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

        pub fn client() -> (kube::Client, Handle) {
            let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            (kube::Client::new(service, "default"), handle)
        }

        /// Takes the next request: (method, path and query, body as JSON or Null).
        pub async fn next(
            handle: &mut Handle,
            status: u16,
            answer: serde_json::Value,
        ) -> Option<(String, String, serde_json::Value)> {
            let (request, send) = handle.next_request().await?;
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            send.send_response(
                Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap(),
            );
            Some((method, uri, body))
        }
    }

    fn service(name: &str, owner_uid: Option<&str>) -> serde_json::Value {
        let mut meta =
            serde_json::json!({"name": name, "namespace": "analytics", "uid": "svc-uid", "resourceVersion": "7"});
        if let Some(uid) = owner_uid {
            meta["ownerReferences"] = serde_json::json!([{"apiVersion": "cairn.dev/v1alpha1", "kind": "AnalyticsPlatform",
                "name": "demo", "uid": uid, "controller": true}]);
        }
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {}})
    }

    fn wanted() -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(service("demo-capture", Some("u1"))).unwrap()
    }

    #[tokio::test]
    async fn apply_refuses_an_object_it_does_not_own_without_writing() {
        let (client, mut handle) = mocked::client();
        let leader = Leadership::unconditional();
        let task = tokio::spawn(async move {
            let children = Children::new(&client, "analytics", "u1", &leader);
            children.apply(&wanted()).await
        });
        let (method, uri, _) = mocked::next(&mut handle, 200, service("demo-capture", None)).await.unwrap();
        assert_eq!((method.as_str(), uri.as_str()), ("GET", "/api/v1/namespaces/analytics/services/demo-capture"));
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(&err, ChildError::Conflict { name, .. } if name == "demo-capture"), "{err}");
        assert!(handle.next_request().await.is_none(), "no PATCH after the GET");
    }

    #[tokio::test]
    async fn apply_patches_its_own_object_with_the_operators_field_manager() {
        let (client, mut handle) = mocked::client();
        let leader = Leadership::unconditional();
        let task = tokio::spawn(async move {
            let children = Children::new(&client, "analytics", "u1", &leader);
            children.apply(&wanted()).await.map(|_| ())
        });
        mocked::next(&mut handle, 200, service("demo-capture", Some("u1"))).await.unwrap();
        let (method, uri, body) = mocked::next(&mut handle, 200, service("demo-capture", Some("u1"))).await.unwrap();
        assert_eq!(method, "PATCH");
        assert!(uri.contains("fieldManager=cairn-operator") && uri.contains("force=true"), "{uri}");
        assert_eq!(body["metadata"]["name"], "demo-capture");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn delete_only_what_it_owns_and_only_that_very_object() {
        let (client, mut handle) = mocked::client();
        let leader = Leadership::unconditional();
        let task = tokio::spawn(async move {
            let children = Children::new(&client, "analytics", "u1", &leader);
            let theirs = children.delete::<k8s_openapi::api::core::v1::Service>("demo-theirs").await?;
            let ours = children.delete::<k8s_openapi::api::core::v1::Service>("demo-ours").await?;
            Ok::<_, ChildError>((theirs, ours))
        });
        mocked::next(&mut handle, 200, service("demo-theirs", Some("someone-else"))).await.unwrap();
        mocked::next(&mut handle, 200, service("demo-ours", Some("u1"))).await.unwrap();
        let (method, _, body) = mocked::next(&mut handle, 200, service("demo-ours", Some("u1"))).await.unwrap();
        assert_eq!(method, "DELETE");
        assert_eq!(body["preconditions"]["uid"], "svc-uid", "deletes that object, not one re-created in between");
        assert_eq!(task.await.unwrap().unwrap(), (false, true));
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_replica_that_is_not_the_leader_sends_nothing() {
        let (client, mut handle) = mocked::client();
        let leader = Leadership::elected();
        let task = tokio::spawn(async move {
            let children = Children::new(&client, "analytics", "u1", &leader);
            children.hand_over_replicas("demo-capture", 3).await
        });
        assert!(matches!(task.await.unwrap(), Err(ChildError::NotLeader)));
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn replicas_are_handed_over_under_a_second_field_manager() {
        let (client, mut handle) = mocked::client();
        let leader = Leadership::unconditional();
        let task = tokio::spawn(async move {
            let children = Children::new(&client, "analytics", "u1", &leader);
            children.hand_over_replicas("demo-capture", 3).await
        });
        let answer =
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo-capture"}});
        let (method, uri, body) = mocked::next(&mut handle, 200, answer).await.unwrap();
        assert_eq!(method, "PATCH");
        assert!(uri.contains(&format!("fieldManager={HANDOVER_MANAGER}")), "{uri}");
        assert_eq!(body["spec"], serde_json::json!({"replicas": 3}), "only the count");
        task.await.unwrap().unwrap();
    }
}
