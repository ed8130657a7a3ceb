/**
 * The signed-in key. It lives in sessionStorage only (gone when the tab closes; never in localStorage, never in
 * a URL). A 401 from any later call signs the user out with an "expired or revoked" notice.
 */
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import { createClient, type ApiClient } from "@/api/client";

const STORAGE_KEY = "collab-bus.api-key";

export type SignOutReason = "signed_out" | "expired";

interface AuthValue {
  token: string | null;
  /** Why the user is at the sign-in page, if they were signed out. */
  notice: SignOutReason | null;
  api: ApiClient;
  signIn(token: string): void;
  signOut(reason?: SignOutReason): void;
}

const AuthContext = createContext<AuthValue | null>(null);

function readStored(): string | null {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function writeStored(token: string | null): void {
  try {
    if (token === null) window.sessionStorage.removeItem(STORAGE_KEY);
    else window.sessionStorage.setItem(STORAGE_KEY, token);
  } catch {
    // storage disabled: the key lives in memory for this page only
  }
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [token, setToken] = useState<string | null>(readStored);
  const [notice, setNotice] = useState<SignOutReason | null>(null);

  const signIn = useCallback((next: string) => {
    writeStored(next);
    setNotice(null);
    setToken(next);
  }, []);

  const signOut = useCallback((reason: SignOutReason = "signed_out") => {
    writeStored(null);
    setToken((current) => {
      // Several calls may fail with 401 at once: only the first sign-out sets the notice.
      if (current !== null) setNotice(reason);
      return null;
    });
  }, []);

  const api = useMemo(
    () => createClient({ token, onUnauthorized: () => signOut("expired") }),
    [token, signOut],
  );

  const value = useMemo(() => ({ token, notice, api, signIn, signOut }), [token, notice, api, signIn, signOut]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error("useAuth outside AuthProvider");
  return value;
}
