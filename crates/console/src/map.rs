//! The deployment drawn as a map: one column per site, each Front End pool and Edge pool a
//! box coloured by whether its servers answer (and saying so in words), the pairing of
//! pools as dashed lines, each Edge pool's next hop as an arrow, the CMS's active and
//! standby pools marked, the federation routes named on the Edge pool that carries them.
//!
//! Laid out here, on the server, as SVG: the layout is a pure function of the snapshot
//! (tested without a browser), and the page needs no script to draw it. Every box carries
//! `data-pool` and `data-health`, and a `<title>` that says all its box shows.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::chart::escape;
use crate::view::{Health, ServerView, Snapshot};

const MARGIN: f64 = 16.0;
const COLUMN: f64 = 300.0;
const GAP: f64 = 90.0;
const BOX_W: f64 = 280.0;
const LINE: f64 = 17.0;
const TOP: f64 = 44.0;
const BETWEEN: f64 = 26.0;

/// Where a pool's box is.
#[derive(Debug, Clone, Copy)]
struct Placed {
    x: f64,
    y: f64,
    h: f64,
    column: usize,
}

impl Placed {
    fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// A box's lines of text after its name.
fn server_line(s: &ServerView) -> String {
    let mut line = format!("{} {}", if s.up { "●" } else { "○" }, s.fqdn);
    if s.up {
        if let Some(v) = s.replica_version {
            let _ = write!(line, " · v{v}");
        }
        if s.cms_master {
            line.push_str(" · CMS master");
        }
    } else {
        line.push_str(" · down");
        if let Some(secs) = s.down_for_secs {
            let _ = write!(line, " {secs} s");
        }
    }
    line
}

/// The map of `snapshot` as an SVG element.
pub fn svg(snapshot: &Snapshot) -> String {
    let mut boxes = String::new();
    let mut placed: HashMap<&str, Placed> = HashMap::new();
    let mut bottom: f64 = TOP;
    for (column, site) in snapshot.sites.iter().enumerate() {
        let x = MARGIN + column as f64 * (COLUMN + GAP);
        let _ = write!(
            boxes,
            r#"<text class="site" x="{x}" y="24">{}</text>"#,
            escape(&format!("Site {}", site.name))
        );
        let mut y = TOP;
        for pool in &site.pools {
            let mut lines = vec![format!("{} · Front End pool", pool.health.word())];
            if let Some(f) = &pool.failover {
                let mut l = f.state.clone();
                if !f.mode.is_empty() {
                    let _ = write!(l, " ({})", f.mode);
                }
                if !f.serving_pool.is_empty() && f.serving_pool != pool.fqdn {
                    let _ = write!(l, " · served by {}", f.serving_pool);
                }
                lines.push(l);
            }
            if let Some(cms) = pool.cms {
                lines.push(format!("Central Management store: {cms}"));
            }
            lines.extend(pool.servers.iter().map(server_line));
            let h = draw_box(
                &mut boxes,
                x,
                y,
                &pool.fqdn,
                pool.health,
                &lines,
                "front-end",
                pool.cms.is_some(),
            );
            placed.insert(&pool.fqdn, Placed { x, y, h, column });
            y += h + BETWEEN;
        }
        for edge in &site.edge_pools {
            let mut lines = vec![
                format!("{} · Edge pool", edge.health.word()),
                format!("next hop: {}", edge.next_hop),
            ];
            lines.extend(edge.routes.iter().cloned());
            lines.extend(edge.servers.iter().map(server_line));
            let h = draw_box(
                &mut boxes,
                x,
                y,
                &edge.fqdn,
                edge.health,
                &lines,
                "edge",
                !edge.routes.is_empty(),
            );
            placed.insert(&edge.fqdn, Placed { x, y, h, column });
            y += h + BETWEEN;
        }
        bottom = bottom.max(y);
    }
    // The links go under the boxes: drawn first, boxes after.
    let mut links = String::new();
    let mut pairs_drawn: Vec<(&str, &str)> = Vec::new();
    for pool in snapshot.pools() {
        let Some(backup) = pool.backup_pool.as_deref() else {
            continue;
        };
        let (a, b) = if pool.fqdn.as_str() < backup {
            (pool.fqdn.as_str(), backup)
        } else {
            (backup, pool.fqdn.as_str())
        };
        if pairs_drawn.contains(&(a, b)) {
            continue;
        }
        pairs_drawn.push((a, b));
        if let (Some(pa), Some(pb)) = (placed.get(a), placed.get(b)) {
            link(
                &mut links,
                pa,
                pb,
                "pair",
                &format!("{a} and {b} are paired: each backs up the other"),
                "paired",
                false,
            );
        }
    }
    for edge in snapshot.edge_pools() {
        if let (Some(pe), Some(pf)) = (
            placed.get(edge.fqdn.as_str()),
            placed.get(edge.next_hop.as_str()),
        ) {
            link(
                &mut links,
                pe,
                pf,
                "next-hop",
                &format!("{} sends to its next hop {}", edge.fqdn, edge.next_hop),
                "next hop",
                true,
            );
        }
    }
    // Room on the right for the curves of the last column.
    let width = MARGIN * 2.0
        + 50.0
        + snapshot.sites.len().max(1) as f64 * COLUMN
        + snapshot.sites.len().saturating_sub(1) as f64 * GAP;
    let height = bottom + MARGIN;
    let summary = summary(snapshot);
    format!(
        r#"<svg class="map" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="map-title" xmlns="http://www.w3.org/2000/svg"><title id="map-title">{}</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow-head"/></marker></defs>{links}{boxes}</svg>"#,
        escape(&summary)
    )
}

/// The map in one sentence per pool, its text alternative.
pub fn summary(snapshot: &Snapshot) -> String {
    let mut parts = Vec::new();
    for pool in snapshot.pools() {
        let mut s = format!(
            "Front End pool {} in {} is {}",
            pool.fqdn,
            pool.site,
            pool.health.word()
        );
        if let Some(f) = &pool.failover
            && f.state != "Normal"
        {
            let _ = write!(s, ", {}", f.state);
            if f.serving_pool != pool.fqdn && !f.serving_pool.is_empty() {
                let _ = write!(s, ", served by {}", f.serving_pool);
            }
        }
        if let Some(cms) = pool.cms {
            let _ = write!(s, ", holds the {cms} Central Management store");
        }
        parts.push(s);
    }
    for edge in snapshot.edge_pools() {
        parts.push(format!(
            "Edge pool {} in {} is {}, next hop {}",
            edge.fqdn,
            edge.site,
            edge.health.word(),
            edge.next_hop
        ));
    }
    format!("Map of {}: {}.", snapshot.domain, parts.join("; "))
}

#[allow(clippy::too_many_arguments)]
fn draw_box(
    out: &mut String,
    x: f64,
    y: f64,
    name: &str,
    health: Health,
    lines: &[String],
    kind: &str,
    marked: bool,
) -> f64 {
    let h = 28.0 + LINE * lines.len() as f64 + 6.0;
    let _ = write!(
        out,
        r#"<g class="box {kind} {} {}" data-pool="{}" data-health="{}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{h}" rx="6"/>"#,
        health.class(),
        if marked { "marked" } else { "" },
        escape(name),
        health.word(),
        escape(&format!("{name}: {}", lines.join("; ")))
    );
    let _ = write!(
        out,
        r#"<text class="name" x="{}" y="{}">{}</text>"#,
        x + 10.0,
        y + 20.0,
        escape(name)
    );
    for (i, line) in lines.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text class="{}" x="{}" y="{}">{}</text>"#,
            if i == 0 { "status" } else { "detail" },
            x + 10.0,
            y + 20.0 + LINE * (i as f64 + 1.0),
            escape(line)
        );
    }
    out.push_str("</g>");
    h
}

/// A line between two boxes: across columns from the facing sides, within a column as a
/// curve on the right.
fn link(
    out: &mut String,
    a: &Placed,
    b: &Placed,
    class: &str,
    title: &str,
    label: &str,
    arrow: bool,
) {
    let (path, lx, ly) = if a.column == b.column {
        let x = a.x + BOX_W;
        let bend = x + 40.0;
        (
            format!(
                "M{x:.1},{:.1} C{bend:.1},{:.1} {bend:.1},{:.1} {x:.1},{:.1}",
                a.mid_y(),
                a.mid_y(),
                b.mid_y(),
                b.mid_y()
            ),
            bend - 8.0,
            (a.mid_y() + b.mid_y()) / 2.0,
        )
    } else {
        let (ax, bx) = if a.column < b.column {
            (a.x + BOX_W, b.x)
        } else {
            (a.x, b.x + BOX_W)
        };
        // The label a third of the way from the source, so that two lines into one box
        // keep their labels apart.
        let t = if arrow { 0.3 } else { 0.5 };
        (
            format!("M{ax:.1},{:.1} L{bx:.1},{:.1}", a.mid_y(), b.mid_y()),
            ax + (bx - ax) * t,
            a.mid_y() + (b.mid_y() - a.mid_y()) * t - 6.0,
        )
    };
    let _ = write!(
        out,
        r#"<g class="link {class}"><title>{}</title><path d="{path}" fill="none"{}/><text class="link-label" x="{lx:.1}" y="{ly:.1}" text-anchor="middle">{}</text></g>"#,
        escape(title),
        if arrow {
            r#" marker-end="url(#arrow)""#
        } else {
            ""
        },
        escape(label)
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::view::*;

    fn server(fqdn: &str, up: bool) -> ServerView {
        ServerView {
            fqdn: fqdn.into(),
            up,
            replica_version: up.then_some(7),
            cms_master: false,
            down_for_secs: (!up).then_some(3),
        }
    }

    /// Two sites, a pair across them, each with an Edge pool whose next hop is its own pool.
    pub(crate) fn two_sites(down: bool) -> Snapshot {
        let pool = |fqdn: &str, site: &str, backup: &str, up: bool| {
            let servers = vec![
                server(&format!("{fqdn}-a"), up),
                server(&format!("{fqdn}-b"), up),
            ];
            PoolView {
                fqdn: fqdn.into(),
                site: site.into(),
                health: Health::of_servers(&servers),
                servers,
                backup_pool: Some(backup.into()),
                edge_pool: None,
                failover: Some(FailoverView {
                    state: "Normal".into(),
                    mode: String::new(),
                    serving_pool: fqdn.into(),
                }),
                cms: None,
            }
        };
        let edge = |fqdn: &str, site: &str, next: &str| EdgePoolView {
            fqdn: fqdn.into(),
            site: site.into(),
            servers: vec![server(&format!("{fqdn}-e"), true)],
            health: Health::Up,
            next_hop: next.into(),
            routes: vec![format!("SIP federation route of {site}")],
        };
        Snapshot {
            domain: "example.org".into(),
            sites: vec![
                SiteView {
                    name: "North".into(),
                    pools: vec![pool(
                        "alpha.example.org",
                        "North",
                        "beta.example.org",
                        !down,
                    )],
                    edge_pools: vec![edge("e1.example.org", "North", "alpha.example.org")],
                },
                SiteView {
                    name: "South".into(),
                    pools: vec![pool("beta.example.org", "South", "alpha.example.org", true)],
                    edge_pools: vec![edge("e2.example.org", "South", "beta.example.org")],
                },
            ],
            ..Snapshot::default()
        }
    }

    #[test]
    fn every_pool_is_a_box_that_says_its_state_in_words() {
        let svg = svg(&two_sites(true));
        for pool in [
            "alpha.example.org",
            "beta.example.org",
            "e1.example.org",
            "e2.example.org",
        ] {
            assert_eq!(
                svg.matches(&format!(r#"data-pool="{pool}""#)).count(),
                1,
                "{pool}"
            );
        }
        assert!(
            svg.contains(r#"data-pool="alpha.example.org" data-health="down""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-pool="beta.example.org" data-health="up""#));
        assert!(svg.contains(">down · Front End pool<"));
        assert!(svg.contains("○ alpha.example.org-a · down 3 s"));
        assert!(svg.contains("● beta.example.org-a · v7"));
        assert!(svg.contains("Site North") && svg.contains("Site South"));
    }

    #[test]
    fn the_pairing_is_drawn_once_and_each_next_hop_as_an_arrow() {
        let svg = svg(&two_sites(false));
        assert_eq!(svg.matches(r#"class="link pair""#).count(), 1);
        assert_eq!(svg.matches(r#"class="link next-hop""#).count(), 2);
        assert_eq!(svg.matches("marker-end=").count(), 2);
        assert!(svg.contains("e1.example.org sends to its next hop alpha.example.org"));
    }

    #[test]
    fn the_text_alternative_says_what_the_colours_show() {
        let s = summary(&two_sites(true));
        assert!(
            s.contains("Front End pool alpha.example.org in North is down"),
            "{s}"
        );
        assert!(s.contains("Edge pool e2.example.org in South is up, next hop beta.example.org"));
    }

    #[test]
    fn names_are_escaped() {
        let mut snap = two_sites(false);
        snap.sites[0].name = "<script>".into();
        let svg = svg(&snap);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("Site &lt;script&gt;"));
    }
}
