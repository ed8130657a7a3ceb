import { Construction } from "lucide-react";
import { Link } from "react-router";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";

/** A page of the navigation that is not built yet: say so plainly. */
export function NotBuilt({ title, what }: { title: string; what: string }) {
  return (
    <>
      <PageHeader title={title} />
      <EmptyState icon={Construction} title="Not built yet">
        <p>
          This page will show {what}. It is not part of the GUI yet; the REST API already offers it (see{" "}
          <a className="text-primary underline" href="/api/docs">
            the API reference
          </a>
          ).
        </p>
      </EmptyState>
    </>
  );
}

export function NotFound() {
  return (
    <>
      <PageHeader title="Page not found" />
      <EmptyState icon={Construction} title="There is no such page">
        <p>
          <Link className="text-primary underline" to="/">
            Go to the overview
          </Link>
        </p>
      </EmptyState>
    </>
  );
}
