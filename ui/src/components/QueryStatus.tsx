import { AlertTriangle } from "lucide-react";
import { describeError } from "@/api/errors";
import { Alert } from "@/components/ui/alert";

/** An error beside a card's data; says when the data shown is from an earlier fetch. */
export function QueryError({ error, stale }: { error: unknown; stale: boolean }) {
  if (!error) return null;
  return (
    <Alert variant="destructive" role="alert" className="mt-2">
      <AlertTriangle aria-hidden="true" className="mt-0.5 shrink-0" />
      <span>
        {describeError(error)}
        {stale && " The figures shown are from the last successful fetch."}
      </span>
    </Alert>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p role="status" className="text-sm text-muted-foreground">
      Loading {what}…
    </p>
  );
}
