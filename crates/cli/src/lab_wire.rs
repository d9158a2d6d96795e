//! The lab's wide-area link (`tandem lab up --hosts`): one process that joins the sites'
//! routers and can cut, delay or lose what crosses between two sites.
//!
//! Why a process of our own and not the kernel's `netem` qdisc: the machines tandem is
//! tested on have neither `sch_netem` nor nftables, and a link whose behaviour the lab sets
//! must work wherever the lab runs. Each site's router gets a TAP device whose other end is
//! this process. A frame read from one site's TAP goes to every other site's TAP (a hub:
//! the routers' WAN addresses share one segment). It is dropped if that pair of sites is cut
//! or if the pair's loss draws it, and otherwise written after the pair's delay, in order.
//! The decision is a pure function of the settings and a random draw (`Wan::verdict`),
//! tested without a network; the delay queue takes its `now` from the caller.
//!
//! `tandem lab net …` talks to this process over a Unix socket in the lab folder (0600, one
//! JSON line each way), so that when the command returns the link already behaves as asked.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The control socket, in the lab folder.
pub(crate) const WIRE_SOCKET: &str = "wire.sock";

/// Frames waiting for their delay towards one site; more are dropped (and counted), as a
/// router's full queue would.
const QUEUE_LIMIT: usize = 20_000;

/// A request line longer than this is refused.
const REQUEST_LIMIT: u64 = 4096;

/// What the link between two sites does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinkSettings {
    /// Nothing crosses.
    pub(crate) cut: bool,
    /// Added to every frame, each way.
    pub(crate) delay_ms: u64,
    /// The share of frames dropped, each way, 0 to 100.
    pub(crate) loss_percent: f64,
}

/// What crossed a link, both ways together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkCounters {
    pub(crate) forwarded: u64,
    pub(crate) dropped_cut: u64,
    pub(crate) dropped_loss: u64,
    pub(crate) dropped_queue_full: u64,
}

/// The link between sites `a` and `b` (indexes into the lab's sites, `a < b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) a: usize,
    pub(crate) b: usize,
    pub(crate) settings: LinkSettings,
    pub(crate) counters: LinkCounters,
}

/// Every link between the lab's sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Wan {
    pub(crate) links: Vec<Link>,
}

/// What happens to one frame on its way from one site to another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    Deliver(Duration),
    DropCut,
    DropLoss,
}

/// A change `tandem lab net` asks for; `between` is a pair of sites, or every pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Cut {
        between: Option<(usize, usize)>,
    },
    Delay {
        between: Option<(usize, usize)>,
        ms: u64,
    },
    Loss {
        between: Option<(usize, usize)>,
        percent: f64,
    },
    Heal {
        between: Option<(usize, usize)>,
    },
    Status,
}

/// The answer: the links as they are now, or why the request was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) wan: Option<Wan>,
    pub(crate) error: Option<String>,
}

impl Wan {
    /// Clean links between every two of `sites` sites.
    pub(crate) fn new(sites: usize) -> Wan {
        let mut links = Vec::new();
        for a in 0..sites {
            for b in a + 1..sites {
                links.push(Link {
                    a,
                    b,
                    settings: LinkSettings::default(),
                    counters: LinkCounters::default(),
                });
            }
        }
        Wan { links }
    }

    fn link_mut(&mut self, x: usize, y: usize) -> Option<&mut Link> {
        let (a, b) = (x.min(y), x.max(y));
        self.links.iter_mut().find(|l| l.a == a && l.b == b)
    }

    /// Decides a frame from site `from` to site `to`, counting it; `draw` is uniform in
    /// [0, 1) (the loss takes the frame when `draw * 100 < loss_percent`).
    pub(crate) fn verdict(&mut self, from: usize, to: usize, draw: f64) -> Verdict {
        let Some(link) = self.link_mut(from, to) else {
            return Verdict::DropCut;
        };
        if link.settings.cut {
            link.counters.dropped_cut += 1;
            Verdict::DropCut
        } else if draw * 100.0 < link.settings.loss_percent {
            link.counters.dropped_loss += 1;
            Verdict::DropLoss
        } else {
            link.counters.forwarded += 1;
            Verdict::Deliver(Duration::from_millis(link.settings.delay_ms))
        }
    }

    fn count_queue_full(&mut self, from: usize, to: usize) {
        if let Some(link) = self.link_mut(from, to) {
            link.counters.forwarded -= 1;
            link.counters.dropped_queue_full += 1;
        }
    }

    /// Applies a change; refuses a pair that is not two of the lab's sites, or a loss
    /// outside 0–100.
    pub(crate) fn apply(&mut self, request: &Request) -> Result<(), String> {
        let between = match request {
            Request::Status => return Ok(()),
            Request::Cut { between }
            | Request::Delay { between, .. }
            | Request::Loss { between, .. }
            | Request::Heal { between } => *between,
        };
        if let Request::Loss { percent, .. } = request
            && !(0.0..=100.0).contains(percent)
        {
            return Err(format!("a loss of {percent}% is not between 0 and 100"));
        }
        let chosen: Vec<usize> = match between {
            None => (0..self.links.len()).collect(),
            Some((x, y)) => {
                let (a, b) = (x.min(y), x.max(y));
                match self.links.iter().position(|l| l.a == a && l.b == b) {
                    Some(i) => vec![i],
                    None => return Err(format!("no link between sites {x} and {y}")),
                }
            }
        };
        for i in chosen {
            let s = &mut self.links[i].settings;
            match request {
                Request::Cut { .. } => s.cut = true,
                Request::Delay { ms, .. } => s.delay_ms = *ms,
                Request::Loss { percent, .. } => s.loss_percent = *percent,
                Request::Heal { .. } => *s = LinkSettings::default(),
                Request::Status => {}
            }
        }
        Ok(())
    }
}

/// Frames on their way to one site, in the order they left, each with when it is due.
#[derive(Debug, Default)]
pub(crate) struct DelayQueue {
    frames: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    ready: Condvar,
}

impl DelayQueue {
    /// Queues a frame due at `due`; false (the frame dropped) if the queue is full.
    pub(crate) fn push(&self, due: Instant, frame: Vec<u8>) -> bool {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if frames.len() >= QUEUE_LIMIT {
            return false;
        }
        frames.push_back((due, frame));
        self.ready.notify_one();
        true
    }

    /// The first frame if it is due at `now`, else how long until it is (None: empty).
    #[cfg(test)]
    pub(crate) fn take_due(&self, now: Instant) -> Result<Vec<u8>, Option<Duration>> {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        Self::take_from(&mut frames, now)
    }

    fn take_from(
        frames: &mut VecDeque<(Instant, Vec<u8>)>,
        now: Instant,
    ) -> Result<Vec<u8>, Option<Duration>> {
        match frames.front() {
            Some((due, _)) if *due <= now => {
                Ok(frames.pop_front().map(|f| f.1).unwrap_or_default())
            }
            Some((due, _)) => Err(Some(*due - now)),
            None => Err(None),
        }
    }

    /// Blocks until the first frame is due, and takes it.
    fn next(&self) -> Vec<u8> {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Woken by a push, or when the first frame falls due; the lock is held from
            // the look to the wait, so no push is missed.
            frames = match Self::take_from(&mut frames, Instant::now()) {
                Ok(frame) => return frame,
                Err(Some(wait)) => {
                    self.ready
                        .wait_timeout(frames, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                Err(None) => self.ready.wait(frames).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// The TAP device of site `site` (0-based) of lab block `block`.
pub(crate) fn tap_name(block: u8, site: usize) -> String {
    format!("tdm{block}w{}", site + 1)
}

/// A small, fast generator for the loss draws (not for anything secret).
#[derive(Debug)]
struct Draws(u64);

impl Draws {
    fn seeded() -> Draws {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Draws((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `tandem lab wire`: makes a TAP device per site, then carries frames between them and
/// answers `lab net` on the socket until killed. Once the socket answers, the lab moves
/// each device into its site's router namespace (the device keeps its file here) and
/// configures it: the network is the lab's to set up, the frames are this process's.
pub(crate) fn run(dir: &Path, block: u8, sites: usize) -> anyhow::Result<()> {
    let mut taps = Vec::new();
    for i in 0..sites {
        let name = tap_name(block, i);
        let tap = tun_tap::Iface::without_packet_info(&name, tun_tap::Mode::Tap)
            .with_context(|| format!("cannot make the TAP device {name} (/dev/net/tun)"))?;
        taps.push(Arc::new(tap));
    }
    let wan = Arc::new(Mutex::new(Wan::new(sites)));
    let queues: Vec<Arc<DelayQueue>> = (0..sites).map(|_| Arc::default()).collect();
    for (to, tap) in taps.iter().enumerate() {
        let (tap, queue) = (tap.clone(), queues[to].clone());
        std::thread::spawn(move || {
            loop {
                let frame = queue.next();
                // A frame the kernel refuses is lost, as on a wire.
                let _ = tap.send(&frame);
            }
        });
    }
    for (from, tap) in taps.iter().enumerate() {
        let (tap, wan, queues) = (tap.clone(), wan.clone(), queues.clone());
        std::thread::spawn(move || {
            let mut draws = Draws::seeded();
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = tap.recv(&mut buf) {
                let now = Instant::now();
                // One lock a frame, for every site it goes to.
                let mut wan = wan.lock().unwrap_or_else(|e| e.into_inner());
                for (to, queue) in queues.iter().enumerate() {
                    if to == from {
                        continue;
                    }
                    if let Verdict::Deliver(delay) = wan.verdict(from, to, draws.next())
                        && !queue.push(now + delay, buf[..n].to_vec())
                    {
                        wan.count_queue_full(from, to);
                    }
                }
            }
        });
    }
    let socket = dir.join(WIRE_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = answer(stream, &wan);
    }
    Ok(())
}

fn answer(stream: UnixStream, wan: &Mutex<Wan>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&stream, REQUEST_LIMIT)).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response {
            wan: None,
            error: Some(format!("not a request: {e}")),
        },
        Ok(request) => {
            let mut wan = wan.lock().unwrap_or_else(|e| e.into_inner());
            match wan.apply(&request) {
                Ok(()) => Response {
                    wan: Some(wan.clone()),
                    error: None,
                },
                Err(e) => Response {
                    wan: None,
                    error: Some(e),
                },
            }
        }
    };
    let mut text = serde_json::to_string(&response)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    Ok(())
}

/// Sends one request to the lab's link and returns its answer.
pub(crate) fn ask(dir: &Path, request: &Request) -> anyhow::Result<Wan> {
    let socket: PathBuf = dir.join(WIRE_SOCKET);
    let stream = UnixStream::connect(&socket).map_err(|e| {
        anyhow!(
            "the lab's link between sites does not answer on {} ({e}); is the lab up with --hosts (`tandem lab status --dir {}`)?",
            socket.display(),
            dir.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let response: Response =
        serde_json::from_str(&line).with_context(|| format!("the lab's link answered {line:?}"))?;
    match (response.wan, response.error) {
        (Some(wan), _) => Ok(wan),
        (None, Some(e)) => bail!("the lab's link refused: {e}"),
        (None, None) => bail!("the lab's link answered nothing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_link_delivers_at_once_and_counts() {
        let mut wan = Wan::new(2);
        assert_eq!(wan.verdict(0, 1, 0.5), Verdict::Deliver(Duration::ZERO));
        assert_eq!(wan.verdict(1, 0, 0.0), Verdict::Deliver(Duration::ZERO));
        assert_eq!(wan.links[0].counters.forwarded, 2);
    }

    #[test]
    fn a_cut_drops_both_ways_until_healed() {
        let mut wan = Wan::new(3);
        wan.apply(&Request::Cut {
            between: Some((1, 0)),
        })
        .unwrap();
        assert_eq!(wan.verdict(0, 1, 0.9), Verdict::DropCut);
        assert_eq!(wan.verdict(1, 0, 0.9), Verdict::DropCut);
        // The other pairs are untouched.
        assert_eq!(wan.verdict(0, 2, 0.9), Verdict::Deliver(Duration::ZERO));
        assert_eq!(wan.verdict(2, 1, 0.9), Verdict::Deliver(Duration::ZERO));
        wan.apply(&Request::Heal { between: None }).unwrap();
        assert_eq!(wan.verdict(0, 1, 0.9), Verdict::Deliver(Duration::ZERO));
        assert_eq!(wan.links[0].counters.dropped_cut, 2);
    }

    #[test]
    fn delay_and_loss_apply_to_every_pair_when_none_is_named() {
        let mut wan = Wan::new(3);
        wan.apply(&Request::Delay {
            between: None,
            ms: 50,
        })
        .unwrap();
        wan.apply(&Request::Loss {
            between: None,
            percent: 10.0,
        })
        .unwrap();
        for (a, b) in [(0, 1), (1, 2), (2, 0)] {
            assert_eq!(wan.verdict(a, b, 0.099), Verdict::DropLoss);
            assert_eq!(
                wan.verdict(a, b, 0.1),
                Verdict::Deliver(Duration::from_millis(50))
            );
        }
    }

    #[test]
    fn a_pair_or_a_loss_that_does_not_exist_is_refused() {
        let mut wan = Wan::new(2);
        assert!(
            wan.apply(&Request::Cut {
                between: Some((0, 2))
            })
            .is_err()
        );
        assert!(
            wan.apply(&Request::Loss {
                between: None,
                percent: 101.0
            })
            .is_err()
        );
        assert_eq!(wan, Wan::new(2));
    }

    #[test]
    fn frames_leave_in_order_when_due() {
        let q = DelayQueue::default();
        let t0 = Instant::now();
        assert!(q.push(t0 + Duration::from_millis(50), vec![1]));
        assert!(q.push(t0 + Duration::from_millis(50), vec![2]));
        assert_eq!(q.take_due(t0), Err(Some(Duration::from_millis(50))));
        assert_eq!(q.take_due(t0 + Duration::from_millis(50)), Ok(vec![1]));
        assert_eq!(q.take_due(t0 + Duration::from_millis(60)), Ok(vec![2]));
        assert_eq!(q.take_due(t0 + Duration::from_millis(60)), Err(None));
    }

    #[test]
    fn a_full_queue_drops() {
        let q = DelayQueue::default();
        let t0 = Instant::now();
        for _ in 0..QUEUE_LIMIT {
            assert!(q.push(t0, vec![0]));
        }
        assert!(!q.push(t0, vec![0]));
    }

    #[test]
    fn draws_are_uniform_enough() {
        let mut d = Draws(42);
        let n = 100_000;
        let below: usize = (0..n).filter(|_| d.next() < 0.1).count();
        assert!((9_000..11_000).contains(&below), "{below}");
    }

    #[test]
    fn requests_read_as_json_lines() {
        let r: Request = serde_json::from_str(r#"{"op":"delay","between":[0,1],"ms":50}"#).unwrap();
        assert_eq!(
            r,
            Request::Delay {
                between: Some((0, 1)),
                ms: 50
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"explode"}"#).is_err());
    }
}
