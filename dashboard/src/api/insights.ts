// Saved insights and dashboards (schemas/openapi/query.yaml, tags insights and dashboards).
import { api } from './client';
import type {
  Dashboard,
  DashboardInput,
  DashboardList,
  DashboardPatch,
  Insight,
  InsightInput,
  InsightList,
  InsightPatch,
  InsightResult,
} from './types';

const base = (projectId: number) => `/api/v1/projects/${projectId}`;

export const listInsights = (projectId: number) =>
  api<InsightList>(`${base(projectId)}/insights`, { query: { limit: 500 } });

export const getInsight = (projectId: number, id: number) => api<Insight>(`${base(projectId)}/insights/${id}`);

export const createInsight = (projectId: number, input: InsightInput) =>
  api<Insight>(`${base(projectId)}/insights`, { method: 'POST', body: input });

export const updateInsight = (projectId: number, id: number, patch: InsightPatch) =>
  api<Insight>(`${base(projectId)}/insights/${id}`, { method: 'PATCH', body: patch });

export const deleteInsight = (projectId: number, id: number) =>
  api<void>(`${base(projectId)}/insights/${id}`, { method: 'DELETE' });

export const getInsightResult = (projectId: number, id: number, signal?: AbortSignal) =>
  api<InsightResult>(`${base(projectId)}/insights/${id}/result`, { signal });

export const listDashboards = (projectId: number) =>
  api<DashboardList>(`${base(projectId)}/dashboards`, { query: { limit: 500 } });

export const getDashboard = (projectId: number, id: number) => api<Dashboard>(`${base(projectId)}/dashboards/${id}`);

export const createDashboard = (projectId: number, input: DashboardInput) =>
  api<Dashboard>(`${base(projectId)}/dashboards`, { method: 'POST', body: input });

export const updateDashboard = (projectId: number, id: number, patch: DashboardPatch) =>
  api<Dashboard>(`${base(projectId)}/dashboards/${id}`, { method: 'PATCH', body: patch });

export const deleteDashboard = (projectId: number, id: number) =>
  api<void>(`${base(projectId)}/dashboards/${id}`, { method: 'DELETE' });
