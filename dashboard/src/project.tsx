import { createContext, useContext } from 'react';
import type { Project } from './api/types';

export const ProjectContext = createContext<Project | null>(null);

/** The project of the current /project/:projectId route. */
export function useProject(): Project {
  const p = useContext(ProjectContext);
  if (!p) throw new Error('useProject outside a project route');
  return p;
}

const LAST_PROJECT_KEY = 'cairn.lastProject';
export const rememberProject = (id: number) => {
  try {
    localStorage.setItem(LAST_PROJECT_KEY, String(id));
  } catch {
    /* private mode */
  }
};
export const lastProject = (): number | null => {
  const v = Number(localStorage.getItem(LAST_PROJECT_KEY));
  return Number.isInteger(v) && v > 0 ? v : null;
};
