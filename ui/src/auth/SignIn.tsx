import { KeyRound, LoaderCircle } from "lucide-react";
import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { Navigate, useLocation, useNavigate } from "react-router";
import { createClient } from "@/api/client";
import { ApiError, describeError } from "@/api/errors";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader } from "@/components/ui/card";
import { Input, Label } from "@/components/ui/input";
import { useAuth } from "./auth";

/** What to tell the user when the key did not work. */
export function signInErrorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.kind === "unauthorized") {
      const reason = typeof error.details.reason === "string" ? ` (${error.details.reason})` : "";
      return `The key was refused${reason}. Check that you pasted the whole key and that it has not been revoked.`;
    }
    if (error.kind === "network") {
      return "The bus is unreachable. Check that it is running, then try again.";
    }
    if (error.kind === "http" && error.status === 403) {
      return `The key is valid but may not list sandboxes: ${error.message}.`;
    }
  }
  return describeError(error);
}

export function SignIn() {
  const { token, notice, signIn } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? "/";
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const inputId = useId();
  const errorId = useId();
  const inputRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    document.title = "Sign in · Collaboration Bus";
    inputRef.current?.focus();
  }, []);

  if (token) return <Navigate to={from} replace />;

  async function onSubmit(event: FormEvent) {
    event.preventDefault();
    const candidate = key.trim();
    if (!candidate) {
      setError("Enter an API key.");
      inputRef.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await createClient({ token: candidate }).get("/api/v1/sandboxes");
      signIn(candidate);
      setKey("");
      navigate(from, { replace: true });
    } catch (e) {
      setError(signInErrorMessage(e));
      inputRef.current?.focus();
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="flex min-h-screen items-center justify-center bg-muted p-4">
      <main className="w-full max-w-md" id="main">
        <Card>
          <CardHeader>
            <h1 className="flex items-center gap-2 text-xl font-semibold">
              <KeyRound aria-hidden="true" className="size-5" /> Collaboration Bus
            </h1>
            <CardDescription>Sign in with an API key to watch and operate the bus.</CardDescription>
          </CardHeader>
          <CardContent>
            {notice === "expired" && (
              <Alert variant="warning" role="alert" className="mb-4">
                Your key expired or was revoked. Sign in again with a valid key.
              </Alert>
            )}
            {notice === "signed_out" && (
              <Alert role="status" className="mb-4">
                You are signed out. The key was removed from this tab.
              </Alert>
            )}
            <form onSubmit={onSubmit} noValidate className="flex flex-col gap-3">
              <Label htmlFor={inputId}>API key</Label>
              <Input
                id={inputId}
                ref={inputRef}
                type="password"
                name="api-key"
                autoComplete="off"
                spellCheck={false}
                value={key}
                onChange={(e) => setKey(e.target.value)}
                aria-invalid={error ? true : undefined}
                aria-describedby={error ? errorId : undefined}
                disabled={busy}
              />
              <p className="text-xs text-muted-foreground">
                The key is kept in this tab only (session storage) and sent to this bus in the Authorization header.
              </p>
              {error && (
                <Alert variant="destructive" role="alert" id={errorId}>
                  {error}
                </Alert>
              )}
              <Button type="submit" disabled={busy}>
                {busy && <LoaderCircle aria-hidden="true" className="animate-spin" />}
                {busy ? "Checking the key…" : "Sign in"}
              </Button>
            </form>
          </CardContent>
        </Card>
      </main>
    </div>
  );
}
