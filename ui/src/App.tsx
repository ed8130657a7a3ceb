import type { ReactNode } from "react";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router";
import { AuthProvider, useAuth } from "@/auth/auth";
import { SignIn } from "@/auth/SignIn";
import { Layout } from "@/components/Layout";
import { NotFound } from "@/pages/NotBuilt";
import { Configuration } from "@/pages/Configuration";
import { DeadLetters } from "@/pages/DeadLetters";
import { Live } from "@/pages/Live";
import { Logs } from "@/pages/Logs";
import { Mailbox } from "@/pages/Mailbox";
import { MessageDetail } from "@/pages/MessageDetail";
import { Overview } from "@/pages/Overview";
import { SandboxDetail } from "@/pages/SandboxDetail";
import { Sandboxes } from "@/pages/Sandboxes";
import { TraceDetail, Traces } from "@/pages/Traces";
import { Workspaces } from "@/pages/Workspaces";

/**
 * The app lives under /ui/ (the service worker's scope and the manifest's start_url). With the trailing slash
 * in the basename, links to the overview point at /ui/ rather than /ui, which the service worker would not
 * control; main.tsx moves a visit to /ui to /ui/ before the router starts.
 */
export const BASENAME = "/ui/";

/** Pages behind sign-in: without a key, go to /signin and come back afterwards. */
function RequireKey({ children }: { children: ReactNode }) {
  const { token } = useAuth();
  const location = useLocation();
  if (!token) {
    return <Navigate to="/signin" replace state={{ from: location.pathname + location.search }} />;
  }
  return children;
}

export function App() {
  return (
    <AuthProvider>
      <BrowserRouter basename={BASENAME}>
        <Routes>
          <Route path="/signin" element={<SignIn />} />
          <Route
            element={
              <RequireKey>
                <Layout />
              </RequireKey>
            }
          >
            <Route index element={<Overview />} />
            <Route path="sandboxes" element={<Sandboxes />} />
            <Route path="sandboxes/:sandboxId" element={<SandboxDetail />} />
            <Route path="sandboxes/:sandboxId/mailbox" element={<Mailbox />} />
            <Route path="sandboxes/:sandboxId/logs" element={<Logs />} />
            <Route path="live" element={<Live />} />
            <Route path="messages/:messageId" element={<MessageDetail />} />
            <Route path="traces" element={<Traces />} />
            <Route path="traces/:traceId" element={<TraceDetail />} />
            <Route path="dead-letters" element={<DeadLetters />} />
            <Route path="workspaces" element={<Workspaces />} />
            <Route path="configuration" element={<Configuration />} />
            <Route path="*" element={<NotFound />} />
          </Route>
        </Routes>
      </BrowserRouter>
    </AuthProvider>
  );
}
