import { cn } from "@/lib/utils";

/** Pretty-printed JSON in a labelled, keyboard-scrollable block. */
export function JsonBlock({ value, label, className }: { value: unknown; label: string; className?: string }) {
  return (
    <pre
      tabIndex={0}
      role="region"
      aria-label={label}
      className={cn(
        "max-h-96 overflow-auto rounded-md border border-border bg-muted p-3 font-mono text-xs leading-relaxed whitespace-pre-wrap break-words",
        className,
      )}
    >
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}
