import { describe, expect, it } from "vitest";
import { applyMailboxParams, DEFAULT_PAGE_SIZE, entryAttempts, pageFacts, parseMailboxParams, unixToIso } from "./mailbox";

describe("mailbox URL", () => {
  it("reads since and limit, ignoring what cannot be used", () => {
    expect(parseMailboxParams("")).toEqual({ since: 0, limit: DEFAULT_PAGE_SIZE, invalid: [] });
    expect(parseMailboxParams("since=40&limit=100")).toEqual({ since: 40, limit: 100, invalid: [] });
    expect(parseMailboxParams("since=-1&limit=0")).toEqual({ since: 0, limit: DEFAULT_PAGE_SIZE, invalid: ["since", "limit"] });
    expect(parseMailboxParams("since=1e3&limit=5000").invalid).toEqual(["since", "limit"]);
    expect(parseMailboxParams("since=99999999999999999").invalid).toEqual(["since"]);
  });

  it("writes them back, leaving out the defaults and keeping other parameters", () => {
    expect(applyMailboxParams({ since: 0, limit: DEFAULT_PAGE_SIZE }, "since=9&x=1").toString()).toBe("x=1");
    expect(applyMailboxParams({ since: 40, limit: 25 }).toString()).toBe("since=40&limit=25");
  });
});

describe("a page", () => {
  const entries = (...seqs: number[]) => seqs.map((seq) => ({ seq }));

  it("knows its range and whether more follows", () => {
    expect(pageFacts({ since: 0, head_seq: 5, next_since: 3, entries: entries(1, 2, 3) })).toEqual({ first: 1, last: 3, more: true, beyondHead: false });
    expect(pageFacts({ since: 3, head_seq: 5, next_since: 5, entries: entries(4, 5) })).toEqual({ first: 4, last: 5, more: false, beyondHead: false });
    expect(pageFacts({ since: 9, head_seq: 5, next_since: 9, entries: [] })).toEqual({ first: null, last: null, more: false, beyondHead: true });
  });

  it("reads an entry's attempts when it has them", () => {
    expect(entryAttempts({ seq: 1, state: "delivered" })).toBeNull();
    expect(entryAttempts({ seq: 1, attempts: 3 })).toBe(3);
    expect(entryAttempts({ seq: 1, attempt: 2 })).toBe(2);
  });

  it("turns a message's unix time into ISO", () => {
    expect(unixToIso(0)).toBe("1970-01-01T00:00:00.000Z");
    expect(unixToIso(1795555990.5)).toBe(new Date(1795555990500).toISOString());
    expect(unixToIso(null)).toBeNull();
  });
});
