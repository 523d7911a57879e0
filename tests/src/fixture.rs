//! Packet fixtures, Katran style: rows of (description, ingress interface, input frame,
//! expected action, expected output frame, expected counter deltas), and the one runner
//! that puts a table through the real XDP object with BPF_PROG_TEST_RUN.
//!
//! A table runs in order, so a row sees what earlier rows left behind (flows, learned
//! MACs). Every counter the table's object exposes is compared for every row: a counter a
//! row does not name must not move.

use aya::Ebpf;
use pl_common::{
    proto::{XDP_DROP, XDP_REDIRECT},
    stats::{EndpointCounter as E, IfaceCounter as I},
};

use crate::{JUMBO_LINEAR, check_frame, xdp_test_run};

/// One expected counter delta: an interface's or an endpoint's counter, by name.
#[derive(Clone, Copy)]
pub enum Delta {
    I(&'static str, I, u64),
    E(&'static str, E, u64),
}

impl Delta {
    /// The counter's name as [`Counters`] lists it: `OWNER COUNTER`.
    fn names(&self, counter: &str) -> bool {
        match self {
            Self::I(on, c, _) => counter == format!("{on} {}", c.name()),
            Self::E(ep, c, _) => counter == format!("{ep} {}", c.name()),
        }
    }

    fn amount(&self) -> u64 {
        match self {
            Self::I(.., n) | Self::E(.., n) => *n,
        }
    }
}

/// One row of a table.
pub struct Fixture {
    pub desc: &'static str,
    /// The interface the frame arrives on.
    pub on: &'static str,
    pub input: Vec<u8>,
    pub action: u32,
    /// None: the frame leaves unchanged (drops, and what is passed).
    pub output: Option<Vec<u8>>,
    pub deltas: Vec<Delta>,
}

impl Fixture {
    /// True if BPF_PROG_TEST_RUN runs this row's frame multi-buffer.
    pub fn multi_buffer(&self) -> bool {
        self.input.len() > JUMBO_LINEAR as usize
    }
}

/// Ingress counters every frame moves.
pub fn seen(on: &'static str, f: &[u8], class: I) -> Vec<Delta> {
    vec![
        Delta::I(on, I::RxPackets, 1),
        Delta::I(on, I::RxBytes, f.len() as u64),
        Delta::I(on, class, 1),
    ]
}

/// A row whose frame is dropped, counted under `class` and `why`.
pub fn dropped(
    desc: &'static str,
    on: &'static str,
    input: Vec<u8>,
    class: I,
    why: Delta,
) -> Fixture {
    let mut deltas = seen(on, &input, class);
    deltas.extend([why, Delta::I(on, I::XdpDrop, 1)]);
    Fixture {
        desc,
        on,
        input,
        action: XDP_DROP,
        output: None,
        deltas,
    }
}

/// A row whose frame leaves, redirected, as `output`; `extra` are its deltas beyond the
/// ingress counters and the verdict.
pub fn redirected(
    desc: &'static str,
    on: &'static str,
    class: I,
    (input, output): (Vec<u8>, Vec<u8>),
    extra: &[Delta],
) -> Fixture {
    let mut deltas = seen(on, &input, class);
    deltas.push(Delta::I(on, I::XdpRedirect, 1));
    deltas.extend_from_slice(extra);
    Fixture {
        desc,
        on,
        input,
        action: XDP_REDIRECT,
        output: Some(output),
        deltas,
    }
}

/// How many rows a table has, and how many of them run multi-buffer: exact, so a row
/// lost in a reorganisation fails the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    pub total: usize,
    pub multi_buffer: usize,
}

/// What the runner needs of a loaded object: where each row's frame arrives, and every
/// counter, named.
pub trait Bench {
    fn ebpf(&mut self) -> &mut Ebpf;
    /// Makes ready for `f` (registrations) and returns its ingress ifindex.
    fn ingress(&mut self, f: &Fixture) -> u32;
    /// Every counter, as (`OWNER COUNTER`, value), in a fixed order.
    fn counters(&self) -> Vec<(String, u64)>;
}

/// Runs `table` in order against `bench`: the number of rows must be `rows`. Returns a
/// line per difference (action, output frame, any counter's delta).
pub fn run(bench: &mut impl Bench, table: &[Fixture], rows: Rows) -> Vec<String> {
    let got = Rows {
        total: table.len(),
        multi_buffer: table.iter().filter(|f| f.multi_buffer()).count(),
    };
    assert_eq!(got, rows, "the table lost or gained rows");
    let mut failures = Vec::new();
    for f in table {
        let ifindex = bench.ingress(f);
        let before = bench.counters();
        let (action, output) = xdp_test_run(bench.ebpf(), ifindex, &f.input);
        let after = bench.counters();
        let expected = f.output.as_ref().unwrap_or(&f.input);
        check_frame(
            f.desc,
            (action, &output),
            (f.action, expected),
            &mut failures,
        );
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            let want: u64 = f
                .deltas
                .iter()
                .filter(|d| d.names(name))
                .map(Delta::amount)
                .sum();
            if a - b != want {
                failures.push(format!(
                    "{}: {name} moved by {}, expected {want}",
                    f.desc,
                    a - b
                ));
            }
        }
    }
    eprintln!("{} fixtures run", table.len());
    failures
}

/// Fails the test with every line of `failures`, if any.
pub fn assert_passed(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
