import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import * as authApi from '../api/auth';
import type { Me, SignupRequest } from '../api/types';
import { getTokens, setTokens, subscribeTokens } from './tokens';

interface AuthState {
  signedIn: boolean;
  me: Me | undefined;
  meError: unknown;
  meLoading: boolean;
  login: (email: string, password: string) => Promise<void>;
  signup: (req: SignupRequest) => Promise<void>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [signedIn, setSignedIn] = useState(() => getTokens() !== null);

  useEffect(
    () =>
      subscribeTokens((t) => {
        const now = t !== null;
        setSignedIn((was) => {
          // Signed out (here, in another tab, or because the session ended): drop every
          // cached answer, which belonged to that session.
          if (was && !now) queryClient.clear();
          return now;
        });
      }),
    [queryClient],
  );

  const meQuery = useQuery({ queryKey: ['me'], queryFn: authApi.getMe, enabled: signedIn, staleTime: 60_000 });

  const login = useCallback(
    async (email: string, password: string) => {
      const res = await authApi.login(email, password);
      queryClient.clear();
      setTokens(res);
    },
    [queryClient],
  );

  const signup = useCallback(
    async (req: SignupRequest) => {
      const res = await authApi.signup(req);
      queryClient.clear();
      setTokens(res);
    },
    [queryClient],
  );

  const logout = useCallback(async () => {
    try {
      if (getTokens()) await authApi.logout();
    } catch {
      // The session may already be over; the tokens are forgotten all the same.
    } finally {
      setTokens(null);
      queryClient.clear();
    }
  }, [queryClient]);

  const value = useMemo<AuthState>(
    () => ({
      signedIn,
      me: meQuery.data,
      meError: meQuery.error,
      meLoading: meQuery.isPending && signedIn,
      login,
      signup,
      logout,
    }),
    [signedIn, meQuery.data, meQuery.error, meQuery.isPending, login, signup, logout],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}
