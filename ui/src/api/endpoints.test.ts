// The GUI may only use what the bus documents: every bus path written in the sources' string literals must be an
// operation of openapi.json (or one of the sockets: /ws/events, /ws/sandboxes/{sandbox_id}/logs), and no literal may
// name another origin.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = join(__dirname, "..", "..");
const openapi = JSON.parse(readFileSync(join(root, "openapi.json"), "utf8")) as { paths: Record<string, unknown> };
const SOCKETS = new Set(["/ws/events", "/ws/sandboxes/{sandbox_id}/logs"]);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    if (!/\.(ts|tsx)$/.test(name) || /\.test\.tsx?$/.test(name) || name.endsWith(".d.ts")) return [];
    return [path];
  });
}

/** The text of every string literal and template piece of a script (comments are not looked at). */
function literals(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const kind = file.endsWith(".tsx") ? ts.ScriptKind.TSX : file.endsWith(".js") ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const out: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateHead(node) ||
      ts.isTemplateMiddle(node) ||
      ts.isTemplateTail(node)
    ) {
      out.push(node.text);
    } else if (ts.isJsxText(node)) {
      out.push(node.text);
    } else if (ts.isJsxAttribute(node) && node.initializer && ts.isStringLiteral(node.initializer)) {
      out.push(node.initializer.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

const scripts = [...sources(join(root, "src")), join(root, "public", "sw.js")];
const html = readFileSync(join(root, "index.html"), "utf8");
const all = scripts.map((file) => ({ file: relative(root, file), strings: literals(file) }));
all.push({ file: "index.html", strings: [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string) });

describe("the GUI's requests", () => {
  it("only name paths of the OpenAPI document or the /ws/events and logs sockets", () => {
    const found: string[] = [];
    for (const { file, strings } of all) {
      for (const s of strings) {
        const match = /^(\/(?:api|ws|readyz|healthz|metrics)\b[^?\s]*)/.exec(s);
        if (!match) continue;
        const path = match[1] as string;
        found.push(path);
        const known = path in openapi.paths || SOCKETS.has(path);
        expect(known, `${file} names ${path}, which the bus does not document`).toBe(true);
      }
    }
    expect(found).toEqual(
      expect.arrayContaining(["/api/v1/sandboxes", "/readyz", "/api/v1/dead-letters", "/ws/events", "/ws/sandboxes/{sandbox_id}/logs"]),
    );
  });

  it("never name another origin", () => {
    for (const { file, strings } of all) {
      const urls = strings.filter((s) => /(?:https?|wss?):\/\/|^\/\/[^/]/.test(s));
      expect(urls, `${file} names an absolute URL`).toEqual([]);
    }
  });
});
