import { describe, expect, it } from "vitest";
import {
  applyConfigFilters,
  filterSettings,
  formatSettingValue,
  HIDDEN,
  matchesSetting,
  NO_CONFIG_FILTERS,
  parseConfigFilters,
  type Setting,
} from "./configuration";

const setting = (name: string, value: unknown, extra: Partial<Setting> = {}): Setting => ({
  name,
  value,
  default: value,
  changed: false,
  secret: false,
  ...extra,
});

const SETTINGS: Setting[] = [
  setting("ACK_TIMEOUT", 30.0),
  setting("ADMIN_API_KEY", HIDDEN, { default: null, changed: true, secret: true }),
  setting("AUTH_ENABLED", false, { default: true, changed: true }),
  setting("AUTH_JWT_SECRET", null, { secret: true }),
  setting("HEARTBEAT_TIMEOUT", 30.0),
  setting("PORT", 8792, { default: 8000, changed: true }),
  setting("REDIS_URL", "redis://:********@cache:6379/0", { default: "redis://127.0.0.1:6379/0", changed: true }),
];

const names = (list: Setting[]) => list.map((s) => s.name);

describe("setting values", () => {
  it("secrets read only as set or not", () => {
    expect(formatSettingValue(HIDDEN, true)).toBe("set (hidden)");
    expect(formatSettingValue(null, true)).toBe("not set");
    expect(formatSettingValue("", true)).toBe("not set");
  });

  it("other values as JSON writes them, strings as they are", () => {
    expect(formatSettingValue(null, false)).toBe("not set");
    expect(formatSettingValue(undefined, false)).toBe("not set");
    expect(formatSettingValue(false, false)).toBe("false");
    expect(formatSettingValue(30.5, false)).toBe("30.5");
    expect(formatSettingValue("gevent", false)).toBe("gevent");
    expect(formatSettingValue("", false)).toBe("(empty)");
    expect(formatSettingValue(["a", 1], false)).toBe('["a",1]');
  });
});

describe("configuration filters", () => {
  it("round-trip through the URL, keeping other parameters", () => {
    const f = parseConfigFilters("q=%20timeout%20&changed=1&x=1");
    expect(f).toEqual({ q: "timeout", changedOnly: true });
    expect(applyConfigFilters(f, "x=1").toString()).toBe("x=1&q=timeout&changed=1");
    expect(parseConfigFilters("changed=true").changedOnly).toBe(true);
    expect(parseConfigFilters("changed=0&q=")).toEqual(NO_CONFIG_FILTERS);
    expect(applyConfigFilters(NO_CONFIG_FILTERS, "q=old&changed=1").toString()).toBe("");
    expect(parseConfigFilters(`q=${"a".repeat(500)}`).q).toHaveLength(200);
  });

  it("no filter shows everything", () => {
    expect(filterSettings(SETTINGS, NO_CONFIG_FILTERS)).toEqual(SETTINGS);
  });

  it("matches every word in the name or the value, ignoring case, _ and -", () => {
    expect(names(filterSettings(SETTINGS, { q: "timeout", changedOnly: false }))).toEqual(["ACK_TIMEOUT", "HEARTBEAT_TIMEOUT"]);
    expect(names(filterSettings(SETTINGS, { q: "ack timeout", changedOnly: false }))).toEqual(["ACK_TIMEOUT"]);
    expect(names(filterSettings(SETTINGS, { q: "Ack_Timeout", changedOnly: false }))).toEqual(["ACK_TIMEOUT"]);
    expect(names(filterSettings(SETTINGS, { q: "cache:6379", changedOnly: false }))).toEqual(["REDIS_URL"]);
    expect(names(filterSettings(SETTINGS, { q: "8792", changedOnly: false }))).toEqual(["PORT"]);
    expect(names(filterSettings(SETTINGS, { q: "nothing like it", changedOnly: false }))).toEqual([]);
  });

  it("finds secrets by how they read, never by their value", () => {
    expect(names(filterSettings(SETTINGS, { q: "hidden", changedOnly: false }))).toEqual(["ADMIN_API_KEY"]);
    expect(matchesSetting(SETTINGS[1]!, { q: "***", changedOnly: false })).toBe(false);
    expect(names(filterSettings(SETTINGS, { q: "secret not set", changedOnly: false }))).toEqual(["AUTH_JWT_SECRET"]);
  });

  it("changed only keeps the settings that differ from their default, with the words too", () => {
    expect(names(filterSettings(SETTINGS, { q: null, changedOnly: true }))).toEqual(["ADMIN_API_KEY", "AUTH_ENABLED", "PORT", "REDIS_URL"]);
    expect(names(filterSettings(SETTINGS, { q: "auth", changedOnly: true }))).toEqual(["AUTH_ENABLED"]);
  });
});
