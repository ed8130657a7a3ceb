import {
  Activity,
  Boxes,
  Inbox,
  LayoutDashboard,
  LogOut,
  Network,
  Radio,
  SlidersHorizontal,
  Waypoints,
  type LucideIcon,
} from "lucide-react";
import { useEffect, useRef } from "react";
import { NavLink, Outlet, useLocation } from "react-router";
import { useAuth } from "@/auth/auth";
import { Button } from "@/components/ui/button";
import { EventsProvider } from "@/lib/events";
import { cn } from "@/lib/utils";
import { SocketIndicator } from "./SocketIndicator";

interface NavItem {
  to: string;
  label: string;
  icon: LucideIcon;
}

export const NAV_ITEMS: NavItem[] = [
  { to: "/", label: "Overview", icon: LayoutDashboard },
  { to: "/sandboxes", label: "Sandboxes", icon: Boxes },
  { to: "/live", label: "Live", icon: Radio },
  { to: "/traces", label: "Traces", icon: Waypoints },
  { to: "/dead-letters", label: "Dead letters", icon: Inbox },
  { to: "/workspaces", label: "Workspaces", icon: Network },
  { to: "/configuration", label: "Configuration", icon: SlidersHorizontal },
];

/** The signed-in frame: banner, main navigation, and the page in <main>. */
export function Layout() {
  const { token, signOut } = useAuth();
  const location = useLocation();
  const first = useRef(true);

  // After client-side navigation, move focus to the new page's heading so screen readers announce it.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const heading = document.querySelector<HTMLElement>("main h1");
    heading?.focus();
  }, [location.pathname]);

  if (!token) return null;

  return (
    <EventsProvider token={token} onUnauthorized={() => signOut("expired")}>
      <a
        href="#main"
        className="sr-only z-50 rounded-md bg-primary px-3 py-2 text-primary-foreground focus:not-sr-only focus:fixed focus:left-2 focus:top-2"
      >
        Skip to content
      </a>
      <div className="flex min-h-screen flex-col">
        <header className="sticky top-0 z-40 flex h-14 items-center gap-3 border-b border-border bg-background/95 px-4 backdrop-blur">
          <Activity aria-hidden="true" className="size-5 shrink-0 text-primary" />
          <span className="font-semibold max-sm:sr-only">Collaboration Bus</span>
          <div className="ml-auto flex items-center gap-2">
            <SocketIndicator />
            <Button variant="outline" size="sm" onClick={() => signOut("signed_out")}>
              <LogOut aria-hidden="true" />
              Sign out
            </Button>
          </div>
        </header>
        <div className="flex flex-1 flex-col md:flex-row">
          <nav
            aria-label="Main"
            className="border-b border-border bg-muted/50 md:w-56 md:shrink-0 md:border-b-0 md:border-r"
          >
            <ul className="flex gap-1 overflow-x-auto p-2 md:sticky md:top-14 md:flex-col md:overflow-visible">
              {NAV_ITEMS.map(({ to, label, icon: Icon }) => (
                <li key={to} className="shrink-0">
                  <NavLink
                    to={to}
                    end={to === "/"}
                    className={({ isActive }) =>
                      cn(
                        "flex items-center gap-2 rounded-md px-3 py-2 text-sm font-medium",
                        "hover:bg-secondary focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-ring",
                        isActive ? "bg-primary text-primary-foreground hover:bg-primary/90" : "text-foreground",
                      )
                    }
                  >
                    <Icon aria-hidden="true" className="size-4" />
                    {label}
                  </NavLink>
                </li>
              ))}
            </ul>
          </nav>
          <main id="main" tabIndex={-1} className="min-w-0 flex-1 p-4 md:p-6 focus:outline-none">
            <Outlet />
          </main>
        </div>
      </div>
    </EventsProvider>
  );
}
