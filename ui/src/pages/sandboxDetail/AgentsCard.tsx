import type { Schemas } from "@/api/client";
import { Badge } from "@/components/ui/badge";
import { Card, CardContent, CardHeader, CardTitle } from "@/components/ui/card";

type Agent = Schemas["Sandbox"]["agents"][number];

/** The sandbox's agents, each with its capabilities and skills. */
export function AgentsCard({ agents }: { agents: Agent[] }) {
  return (
    <Card aria-labelledby="sb-agents">
      <CardHeader>
        <CardTitle id="sb-agents">Agents and skills ({agents.length})</CardTitle>
      </CardHeader>
      <CardContent>
        {agents.length === 0 ? (
          <p className="text-sm text-muted-foreground">No agent registered in this sandbox.</p>
        ) : (
          <ul className="flex flex-col gap-3 text-sm">
            {agents.map((a) => (
              <AgentItem key={a.name} agent={a} />
            ))}
          </ul>
        )}
      </CardContent>
    </Card>
  );
}

function AgentItem({ agent: a }: { agent: Agent }) {
  return (
    <li className="flex flex-col gap-1">
      <span className="font-medium">{a.name}</span>
      {a.capabilities.length > 0 && (
        <span className="flex flex-wrap items-center gap-1">
          <span className="text-xs text-muted-foreground">capabilities:</span>
          {a.capabilities.map((c) => (
            <Badge key={c}>{c}</Badge>
          ))}
        </span>
      )}
      {(a.skills ?? []).length > 0 && (
        <ul className="flex flex-col gap-1 pl-3">
          {(a.skills ?? []).map((sk) => (
            <li key={sk.id}>
              <Badge variant="outline">{sk.name || sk.id}</Badge>{" "}
              <span className="font-mono text-xs text-muted-foreground">{sk.id}</span>
              {sk.description && <span className="block text-muted-foreground">{sk.description}</span>}
            </li>
          ))}
        </ul>
      )}
    </li>
  );
}
