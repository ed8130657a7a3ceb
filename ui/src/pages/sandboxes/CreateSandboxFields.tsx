import type { ReactNode } from "react";
import { Input, Label, Select } from "@/components/ui/input";
import { NETWORK_MODES, type CreateSandboxForm } from "@/lib/sandboxes";

type Key = keyof CreateSandboxForm;

const NUMBER_FIELDS: { key: "memory_mb" | "cpus" | "pids"; label: string; hint: string }[] = [
  { key: "memory_mb", label: "Memory limit (MiB)", hint: "8 to 1048576" },
  { key: "cpus", label: "CPU limit", hint: "e.g. 0.5" },
  { key: "pids", label: "Process limit", hint: "8 or more" },
];

const TEXTAREA_CLASS =
  "rounded-md border border-input bg-background px-3 py-1 font-mono text-sm shadow-sm focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-ring aria-[invalid=true]:border-destructive";

/**
 * The Create sandbox form's fields. Each control is `${base}-${key}`, described by its hint (`…-hint`) and, when the
 * check found a problem, by the problem (`…-error`).
 */
export function CreateSandboxFields({
  base,
  form,
  onForm,
  errors,
  workspaces,
  workspaceHint,
}: {
  base: string;
  form: CreateSandboxForm;
  onForm: (form: CreateSandboxForm) => void;
  errors: Record<string, string>;
  /** The workspaces to choose from. */
  workspaces: string[];
  workspaceHint: string;
}) {
  const field = (key: Key) => ({
    id: `${base}-${key}`,
    "aria-invalid": errors[key] ? true : undefined,
    "aria-describedby": [`${base}-${key}-hint`, errors[key] ? `${base}-${key}-error` : null].filter(Boolean).join(" "),
  });
  const shell = { base, errors };

  return (
    <>
      <Field {...shell} name="sandbox_id" label="Sandbox id" hint="optional: the bus makes one up (sbx-…)">
        <Input {...field("sandbox_id")} value={form.sandbox_id} onChange={(e) => onForm({ ...form, sandbox_id: e.target.value })} />
      </Field>
      <Field {...shell} name="workspace" label="Workspace" hint={workspaceHint}>
        <Select {...field("workspace")} value={form.workspace} onChange={(e) => onForm({ ...form, workspace: e.target.value })}>
          {workspaces.map((w) => (
            <option key={w} value={w}>
              {w}
            </option>
          ))}
        </Select>
      </Field>
      <Field {...shell} name="image" label="Image" hint="optional, e.g. aintandem/collab-agent:1">
        <Input {...field("image")} value={form.image} onChange={(e) => onForm({ ...form, image: e.target.value })} />
      </Field>
      <Field {...shell} name="command" label="Command" hint="optional, one argument per line (the image's own command otherwise)">
        <textarea
          {...field("command")}
          rows={2}
          value={form.command}
          onChange={(e) => onForm({ ...form, command: e.target.value })}
          className={TEXTAREA_CLASS}
        />
      </Field>
      <Field
        {...shell}
        name="env"
        label="Environment"
        hint="optional, NAME=value per line (SANDBOX_ID, WORKSPACE, COLLABORATION_BUS_URL and BUS_TOKEN are set by the bus)"
      >
        <textarea
          {...field("env")}
          rows={2}
          value={form.env}
          onChange={(e) => onForm({ ...form, env: e.target.value })}
          className={TEXTAREA_CLASS}
        />
      </Field>
      <fieldset className="grid gap-3 sm:grid-cols-3">
        <legend className="mb-1 text-sm font-medium">Limits (optional)</legend>
        {NUMBER_FIELDS.map((f) => (
          <Field key={f.key} {...shell} name={f.key} label={f.label} hint={f.hint}>
            <Input {...field(f.key)} type="number" step="any" value={form[f.key]} onChange={(e) => onForm({ ...form, [f.key]: e.target.value })} />
          </Field>
        ))}
      </fieldset>
      <Field {...shell} name="network_mode" label="Network mode" hint="how the container reaches the bus" hintClassName="sr-only">
        <Select {...field("network_mode")} value={form.network_mode} onChange={(e) => onForm({ ...form, network_mode: e.target.value })}>
          <option value="">the bus's default</option>
          {NETWORK_MODES.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </Select>
      </Field>
      <div className="flex items-center gap-2 text-sm">
        <input
          id={`${base}-start`}
          type="checkbox"
          className="size-4"
          checked={form.start}
          onChange={(e) => onForm({ ...form, start: e.target.checked })}
        />
        <Label htmlFor={`${base}-start`}>Start it at once</Label>
      </div>
    </>
  );
}

/** A label, the control (children), its hint and the problem the check found with it, if any. */
function Field({
  base,
  errors,
  name,
  label,
  hint,
  hintClassName = "text-xs text-muted-foreground",
  children,
}: {
  base: string;
  errors: Record<string, string>;
  name: Key;
  label: string;
  hint: string;
  hintClassName?: string;
  children: ReactNode;
}) {
  return (
    <div className="flex flex-col gap-1.5">
      <Label htmlFor={`${base}-${name}`}>{label}</Label>
      {children}
      <span id={`${base}-${name}-hint`} className={hintClassName}>
        {hint}
      </span>
      {errors[name] && (
        <span id={`${base}-${name}-error`} className="text-xs text-destructive">
          {label}: {errors[name]}
        </span>
      )}
    </div>
  );
}
