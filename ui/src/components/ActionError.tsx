import { AlertTriangle, ShieldAlert } from "lucide-react";
import { ApiError, describeError } from "@/api/errors";
import { Alert } from "@/components/ui/alert";

/** One sentence for an action's failure; a role refusal (403 forbidden) says which permission is missing. */
export function describeActionError(error: unknown): string {
  if (error instanceof ApiError && error.status === 403 && error.code === "forbidden") {
    const role = typeof error.details.role === "string" ? error.details.role : null;
    const permission = typeof error.details.permission === "string" ? error.details.permission : null;
    const allowed = Array.isArray(error.details.allowed_roles)
      ? error.details.allowed_roles.filter((r): r is string => typeof r === "string" && r !== "sandbox")
      : [];
    const who = allowed.length > 0 ? `a key with the role ${allowed.join(", ").replace(/, ([^,]*)$/, " or $1")}` : "another key";
    return (
      `Not allowed: this key's role${role ? ` (${role})` : ""} lacks the ` +
      `${permission ? `${permission} ` : ""}permission. Sign in with ${who} to do this.`
    );
  }
  return describeError(error);
}

export function isForbidden(error: unknown): boolean {
  return error instanceof ApiError && error.status === 403;
}

/** An action's error, announced (role="alert"). */
export function ActionError({ error, className }: { error: unknown; className?: string }) {
  if (!error) return null;
  const Icon = isForbidden(error) ? ShieldAlert : AlertTriangle;
  return (
    <Alert variant="destructive" role="alert" className={className}>
      <Icon aria-hidden="true" className="mt-0.5 shrink-0" />
      <span>{describeActionError(error)}</span>
    </Alert>
  );
}
