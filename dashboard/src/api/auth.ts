// The auth service's public API (schemas/openapi/auth.yaml), reached through query's forwarding.
import { api } from './client';
import type {
  LoginResponse,
  Me,
  Member,
  Organization,
  PersonalKey,
  PersonalKeyInput,
  Project,
  Role,
  SignupRequest,
  SignupResponse,
  WriteKey,
} from './types';

export const login = (email: string, password: string) =>
  api<LoginResponse>('/api/v1/login', { method: 'POST', body: { email, password }, auth: false });

export const signup = (req: SignupRequest) =>
  api<SignupResponse>('/api/v1/signup', { method: 'POST', body: req, auth: false });

export const logout = () => api<void>('/api/v1/logout', { method: 'POST' });

export const getMe = () => api<Me>('/api/v1/me');

export const listOrganizations = () => api<Organization[]>('/api/v1/organizations');

export const listMembers = (orgId: number) => api<Member[]>(`/api/v1/organizations/${orgId}/members`);

export interface Invitation {
  id: number;
  organization_id: number;
  email: string;
  role: Role;
  invited_by: number | null;
  created_at: string;
  expires_at: string;
}

/** Invites an email: the answer carries the one-time token to pass on (shown only here). */
export const inviteMember = (orgId: number, email: string, role: Role) =>
  api<{ invitation: Invitation; token: string }>(`/api/v1/organizations/${orgId}/members`, {
    method: 'POST',
    body: { email, role },
  });

/** The signed-in user accepts an invitation sent to their email. */
export const acceptInvitation = (token: string) =>
  api<Member>('/api/v1/invitations/accept', { method: 'POST', body: { token } });

export const updateMember = (orgId: number, userId: number, role: Role) =>
  api<Member>(`/api/v1/organizations/${orgId}/members/${userId}`, { method: 'PATCH', body: { role } });

export const removeMember = (orgId: number, userId: number) =>
  api<void>(`/api/v1/organizations/${orgId}/members/${userId}`, { method: 'DELETE' });

export const listProjects = () => api<Project[]>('/api/v1/projects');

export const getProject = (id: number) => api<Project>(`/api/v1/projects/${id}`);

export const updateProject = (id: number, patch: { name?: string; timezone?: string }) =>
  api<Project>(`/api/v1/projects/${id}`, { method: 'PATCH', body: patch });

export const listWriteKeys = (projectId: number) => api<WriteKey[]>(`/api/v1/projects/${projectId}/write-keys`);

export const createWriteKey = (projectId: number, name: string) =>
  api<WriteKey>(`/api/v1/projects/${projectId}/write-keys`, { method: 'POST', body: name ? { name } : {} });

export const revokeWriteKey = (projectId: number, keyId: number) =>
  api<void>(`/api/v1/projects/${projectId}/write-keys/${keyId}`, { method: 'DELETE' });

export const listPersonalKeys = () => api<PersonalKey[]>('/api/v1/personal-keys');

export const createPersonalKey = (input: PersonalKeyInput) =>
  api<PersonalKey>('/api/v1/personal-keys', { method: 'POST', body: input });

export const revokePersonalKey = (id: number) => api<void>(`/api/v1/personal-keys/${id}`, { method: 'DELETE' });
