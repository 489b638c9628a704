import { lazy, useState } from 'react';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router';
import { ApiError } from './api/client';
import { AuthProvider } from './auth/AuthContext';
import { RequireAuth } from './auth/RequireAuth';
import { LoginPage } from './pages/LoginPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { ProjectRoute } from './pages/ProjectRoute';
import { ProjectsPage } from './pages/ProjectsPage';
import { SignupPage } from './pages/SignupPage';

// The screens load on first use, so that logging in does not wait for the chart library.
const TrendsPage = lazy(() => import('./pages/TrendsPage').then((m) => ({ default: m.TrendsPage })));
const FunnelsPage = lazy(() => import('./pages/FunnelsPage').then((m) => ({ default: m.FunnelsPage })));
const RetentionPage = lazy(() => import('./pages/RetentionPage').then((m) => ({ default: m.RetentionPage })));
const StickinessPage = lazy(() => import('./pages/StickinessPage').then((m) => ({ default: m.StickinessPage })));
const LifecyclePage = lazy(() => import('./pages/LifecyclePage').then((m) => ({ default: m.LifecyclePage })));
const PathsPage = lazy(() => import('./pages/PathsPage').then((m) => ({ default: m.PathsPage })));
const SessionsPage = lazy(() => import('./pages/SessionsPage').then((m) => ({ default: m.SessionsPage })));
const SqlPage = lazy(() => import('./pages/SqlPage').then((m) => ({ default: m.SqlPage })));
const EventsPage = lazy(() => import('./pages/EventsPage').then((m) => ({ default: m.EventsPage })));
const PersonsPage = lazy(() => import('./pages/PersonsPage').then((m) => ({ default: m.PersonsPage })));
const CohortsPage = lazy(() => import('./pages/CohortsPage').then((m) => ({ default: m.CohortsPage })));
const PersonPage = lazy(() => import('./pages/PersonPage').then((m) => ({ default: m.PersonPage })));
const DashboardsPage = lazy(() => import('./pages/DashboardsPage').then((m) => ({ default: m.DashboardsPage })));
const DashboardPage = lazy(() => import('./pages/DashboardPage').then((m) => ({ default: m.DashboardPage })));
const InsightsPage = lazy(() => import('./pages/InsightsPage').then((m) => ({ default: m.InsightsPage })));
const SettingsPage = lazy(() => import('./pages/SettingsPage').then((m) => ({ default: m.SettingsPage })));

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // A refused query (4xx) will be refused again; a network error or 5xx is tried once more.
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 1,
        refetchOnWindowFocus: false,
        staleTime: 10_000,
      },
    },
  });
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/signup" element={<SignupPage />} />
      <Route
        path="/"
        element={
          <RequireAuth>
            <ProjectsPage />
          </RequireAuth>
        }
      />
      <Route
        path="/project/:projectId"
        element={
          <RequireAuth>
            <ProjectRoute />
          </RequireAuth>
        }
      >
        <Route index element={<Navigate to="trends" replace />} />
        <Route path="trends" element={<TrendsPage />} />
        <Route path="funnels" element={<FunnelsPage />} />
        <Route path="retention" element={<RetentionPage />} />
        <Route path="stickiness" element={<StickinessPage />} />
        <Route path="lifecycle" element={<LifecyclePage />} />
        <Route path="paths" element={<PathsPage />} />
        <Route path="sessions" element={<SessionsPage />} />
        <Route path="sql" element={<SqlPage />} />
        <Route path="events" element={<EventsPage />} />
        <Route path="persons" element={<PersonsPage />} />
        <Route path="persons/:personId" element={<PersonPage />} />
        <Route path="cohorts" element={<CohortsPage />} />
        <Route path="dashboards" element={<DashboardsPage />} />
        <Route path="dashboards/:dashboardId" element={<DashboardPage />} />
        <Route path="insights" element={<InsightsPage />} />
        <Route path="settings" element={<SettingsPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}

export function App({ queryClient }: { queryClient?: QueryClient }) {
  const [client] = useState(() => queryClient ?? makeQueryClient());
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <AuthProvider>
          <AppRoutes />
        </AuthProvider>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
