/**
 * The Configuration page's logic: how a setting's value reads (secrets only as set or not), and the settings
 * table's filters, kept in the URL (`?q=timeout&changed=1`).
 */
import type { Schemas } from "@/api/client";

export type Setting = Schemas["_Setting"];

/** The bus shows a secret that is set as this; the page never has its value. */
export const HIDDEN = "********";

/**
 * A setting's value (or default) as text: a secret reads "set (hidden)" or "not set", a value the bus does not
 * have (null) "not set", booleans and numbers as JSON writes them, strings as they are ("(empty)" for none).
 */
export function formatSettingValue(value: unknown, secret: boolean): string {
  if (value === null || value === undefined) return "not set";
  if (secret) return value === "" ? "not set" : "set (hidden)";
  if (value === "") return "(empty)";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

export interface ConfigFilters {
  /** Words that must all appear in the setting's name or its value (case-insensitive). */
  q: string | null;
  /** Only the settings that differ from their default. */
  changedOnly: boolean;
}

export const NO_CONFIG_FILTERS: ConfigFilters = { q: null, changedOnly: false };

const MAX_QUERY = 200;

/** Read the filters from a query string; `changed` is on for 1 or true, and a too-long `q` is cut. */
export function parseConfigFilters(search: URLSearchParams | string): ConfigFilters {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const q = params.get("q")?.trim().slice(0, MAX_QUERY) || null;
  const changed = params.get("changed")?.trim().toLowerCase();
  return { q, changedOnly: changed === "1" || changed === "true" };
}

/** Write the filters into `base` (other parameters are kept), leaving out the empty ones. */
export function applyConfigFilters(filters: ConfigFilters, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  params.delete("q");
  params.delete("changed");
  const q = filters.q?.trim();
  if (q) params.set("q", q);
  if (filters.changedOnly) params.set("changed", "1");
  return params;
}

/** Lower case, with `_` and `-` as spaces: "ack timeout" finds ACK_TIMEOUT. */
function normalize(text: string): string {
  return text.toLowerCase().replace(/[_-]+/g, " ");
}

/**
 * Does a setting pass the filters? Each word of `q` (case-insensitive; `_` and `-` count as spaces) must appear
 * in its name or in its value as shown — so a secret is found by "set" or "hidden", never by its value.
 */
export function matchesSetting(setting: Setting, filters: ConfigFilters): boolean {
  if (filters.changedOnly && !setting.changed) return false;
  const words = normalize(filters.q ?? "").split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const haystack = normalize(`${setting.name} ${formatSettingValue(setting.value, setting.secret)}`);
  return words.every((w) => haystack.includes(w));
}

export function filterSettings(settings: readonly Setting[], filters: ConfigFilters): Setting[] {
  return settings.filter((s) => matchesSetting(s, filters));
}
