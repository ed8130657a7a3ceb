import { describe, expect, it } from "vitest";
import { applySandboxFilters, matchesFilters, parseSandboxFilters } from "./filters";

describe("parseSandboxFilters", () => {
  it("reads workspace and status", () => {
    expect(parseSandboxFilters("?workspace=demo&status=online")).toEqual({
      workspace: "demo",
      status: "online",
      invalid: [],
    });
  });

  it("treats missing, empty and 'any' as no filter", () => {
    expect(parseSandboxFilters("")).toEqual({ workspace: null, status: null, invalid: [] });
    expect(parseSandboxFilters("workspace=&status=")).toEqual({ workspace: null, status: null, invalid: [] });
    expect(parseSandboxFilters("status=any")).toEqual({ workspace: null, status: null, invalid: [] });
  });

  it("accepts the status in any case, and trims", () => {
    expect(parseSandboxFilters("status=%20OFFLINE%20").status).toBe("offline");
    expect(parseSandboxFilters("status=unregistered").status).toBe("unregistered");
  });

  it("ignores values that cannot be valid and names them", () => {
    expect(parseSandboxFilters("workspace=-bad&status=sleeping")).toEqual({
      workspace: null,
      status: null,
      invalid: ["workspace", "status"],
    });
    expect(parseSandboxFilters(`workspace=${"a".repeat(129)}`).invalid).toEqual(["workspace"]);
    expect(parseSandboxFilters("workspace=team.a:b@c-d_e").workspace).toBe("team.a:b@c-d_e");
  });

  it("decodes percent-encoding", () => {
    expect(parseSandboxFilters("workspace=a%40b").workspace).toBe("a@b");
  });

  it("takes URLSearchParams too", () => {
    expect(parseSandboxFilters(new URLSearchParams({ workspace: "w1" })).workspace).toBe("w1");
  });
});

describe("applySandboxFilters", () => {
  it("writes set filters and leaves out empty ones", () => {
    expect(applySandboxFilters({ workspace: "demo", status: null }).toString()).toBe("workspace=demo");
    expect(applySandboxFilters({ workspace: null, status: null }).toString()).toBe("");
  });

  it("keeps other parameters and replaces old filter values", () => {
    const out = applySandboxFilters({ workspace: null, status: "offline" }, "page=2&workspace=old&status=online");
    expect(out.toString()).toBe("page=2&status=offline");
  });

  it("round-trips", () => {
    const f = { workspace: "a@b", status: "online" as const };
    const parsed = parseSandboxFilters(applySandboxFilters(f));
    expect({ workspace: parsed.workspace, status: parsed.status }).toEqual(f);
  });
});

describe("matchesFilters", () => {
  const sb = { workspace: "demo", status: "online" };
  it("matches on each set filter", () => {
    expect(matchesFilters(sb, { workspace: null, status: null })).toBe(true);
    expect(matchesFilters(sb, { workspace: "demo", status: "online" })).toBe(true);
    expect(matchesFilters(sb, { workspace: "other", status: null })).toBe(false);
    expect(matchesFilters(sb, { workspace: null, status: "offline" })).toBe(false);
  });
});
