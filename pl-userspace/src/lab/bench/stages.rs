//! Where a packet's time goes: the data path measured stage by stage, live. The object
//! holds a second copy of the data path, `pl_xdp_staged`, with a stage knob: loaded with
//! the knob at a stage, it drops every frame right after that stage. Each stage's copy is
//! attached in turn on `fw-globex` (all copies share one flow table through pins) while
//! the generator sends; the generator and the forwarder's XDP run on one CPU, so the
//! generator's rate is one over (its own cost + the veth + the data path up to that
//! stage). A stage's cost is its ns per frame less the previous stage's; the whole path
//! is the product's `pl_xdp`, which forwards to the sink as in the packet-rate rounds.
//! Stages take turns within each round, so drift shows as spread, not as a stage's cost.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use pl_common::{
    bench::{ESTABLISHED_STAGES, NEW_FLOW_STAGES, STAGE_NONE, program_for},
    maps::FLOWS_MAP,
};

use super::{
    TARGETS,
    driver::{Bench, ifindex},
    frames::{self, expect_rewritten},
    results::{Sample, StageResult},
};
use crate::{
    apply::apply,
    config::Source,
    dataplane,
    flows::FlowTable,
    lab::netns,
    model::{LiveInterfaces, Model},
    plan::{Neighbors, Plan},
    state::State,
};

/// The new-flow path, as the results name it (established paths carry their flow count).
pub const NEW_FLOW: &str = "new flow (TCP SYN)";

/// One copy of the data path: the product's (`STAGE_NONE`) or a stage's.
struct Copy {
    stage: u32,
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
}

impl Copy {
    fn prog(&mut self) -> &mut Xdp {
        dataplane::program_named(&mut self.ebpf, program_for(self.stage))
    }
}

/// A path's copies (the product's and one per stage), loaded and programmed in the
/// forwarder's namespace; the pins they share.
struct Copies {
    copies: Vec<Copy>,
    state: State,
    fw: String,
    ingress: u32,
}

impl Copies {
    /// The copies for `stages`, sharing a table of `entries` entries.
    fn load(fw: &str, entries: u32, stages: &[(u32, &str)]) -> anyhow::Result<Self> {
        let ingress = ifindex(fw, "fw-globex")?;
        let stages: Vec<u32> = std::iter::once(STAGE_NONE)
            .chain(stages.iter().map(|&(s, _)| s))
            .collect();
        let (copies, state) = netns::run_in(fw, || -> anyhow::Result<_> {
            let plan = plan(entries)?;
            let (state, _) =
                State::open("bench-stages").context("the stage copies' pin directory")?;
            // A run that died may have left its pins: start from an empty table.
            state.unpin_maps()?;
            let copies = stages
                .iter()
                .map(|&stage| -> anyhow::Result<Copy> {
                    let mut ebpf = dataplane::load_staged(entries, &state, stage)
                        .map_err(|e| anyhow::anyhow!("loading stage {stage}: {e}"))?;
                    apply(&mut ebpf, &plan, None)
                        .map_err(|e| anyhow::anyhow!("programming stage {stage}: {e}"))?;
                    Ok(Copy {
                        stage,
                        ebpf,
                        link: None,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>();
            match copies {
                Ok(c) => Ok((c, state)),
                Err(e) => {
                    let _ = state.unpin_maps();
                    Err(e)
                }
            }
        })??;
        Ok(Self {
            copies,
            state,
            fw: fw.to_owned(),
            ingress,
        })
    }

    /// Attaches `stage`'s copy on fw-globex in place of whichever is there.
    fn attach(&mut self, stage: u32) -> anyhow::Result<()> {
        self.detach()?;
        let ingress = self.ingress;
        let copy = self
            .copies
            .iter_mut()
            .find(|c| c.stage == stage)
            .with_context(|| format!("no copy for stage {stage}"))?;
        let prog = copy.prog();
        let link = netns::run_in(&self.fw, || {
            prog.attach_to_if_index(ingress, XdpMode::Driver)
        })??;
        copy.link = Some(link);
        Ok(())
    }

    fn detach(&mut self) -> anyhow::Result<()> {
        for c in &mut self.copies {
            if let Some(link) = c.link.take() {
                c.prog().detach(link)?;
            }
        }
        Ok(())
    }

    fn table(&self) -> anyhow::Result<FlowTable> {
        Ok(FlowTable::from_pin(&self.state.map_pin(FLOWS_MAP))?)
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        let _ = self.detach();
        let _ = self.state.unpin_maps();
        let _ = std::fs::remove_dir(self.state.dir());
    }
}

/// The bench config's plan in this namespace. Only established flows (whose entries carry
/// their MACs) and test frames the sink sees by address run through the copies: any
/// target MAC does.
fn plan(entries: u32) -> anyhow::Result<Plan> {
    // Idle timeouts past any gap in a flow's traffic here: a flow waits out the windows of
    // the stages before the lookup, and must not meet the next lookup past the shortest
    // timeout (it would be judged with its other half, a second miss the rounds' windows
    // never pay, as there every flow comes back within a second or two).
    let mut text = frames::config(entries);
    for t in [
        "tcp_idle_timeout_s",
        "tcp_transient_timeout_s",
        "tcp_half_closed_timeout_s",
        "tcp_closing_timeout_s",
        "udp_idle_timeout_s",
        "udp_oneway_timeout_s",
    ] {
        text.push_str(&format!("{t} = 3600\n"));
    }
    let source = Source {
        path: PathBuf::from("bench-stages.toml"),
        text,
    };
    let cfg = source.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let model = Model::build(&source, &cfg, &LiveInterfaces).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(provider) = model.networks.iter().position(|n| n.name == "prov") else {
        bail!("the bench config has no prov network");
    };
    let provider = u16::try_from(provider)?;
    let neigh: Neighbors = (0..TARGETS)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(frames::FIRST_TARGET) + u32::from(i));
            ((provider, ip.into()), [2, 0, 0, 0, 9, i])
        })
        .collect();
    Ok(Plan::build(&model, &neigh, &Default::default()))
}

/// ns per frame the generator's CPU spent: what it sent over the window.
fn ns_per_frame(s: &Sample) -> f64 {
    if s.sent == 0 {
        0.0
    } else {
        s.seconds * 1e9 / s.sent as f64
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Both paths, stage by stage, each on a table sized as the packet-rate rounds size it:
/// established UDP at each of `est_flows` (and Zipf-skewed at `zipf`) over `window`s,
/// and new flows (every frame a fresh SYN, the table emptied before each window) over
/// `new_window`s; `rounds` turns each.
pub(super) fn measure(
    b: &mut Bench<'_>,
    est_flows: &[u32],
    zipf: Option<u32>,
    window: Duration,
    new_window: Duration,
    rounds: usize,
) -> anyhow::Result<Vec<StageResult>> {
    b.leave()?;
    let fw = b.topo.forwarder_ns.clone();
    b.expect(expect_rewritten(true))?;
    let mut out = Vec::new();
    for &flows in est_flows {
        let mut copies = Copies::load(&fw, super::sized(flows), &ESTABLISHED_STAGES)?;
        // The established flows, made by the product's copy (SNAT probes can miss a free
        // port once in a few thousand flows at a million: 99.9% will do).
        copies.attach(STAGE_NONE)?;
        b.generate(false, flows)?;
        // Until a whole pass over the flows adds none: the flows a window's copy could still
        // make would break the check below.
        let want = 2 * u64::from(flows) * 999 / 1000;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = u64::MAX;
        loop {
            let held = copies.table()?.held();
            if held >= want && held == last {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the generator's {flows} flows were not made in 60 s ({held} entries)"
            );
            last = held;
            let mut sent = 0;
            while sent < u64::from(flows) {
                sent += b.run_for(Duration::from_millis(100))?.sent;
            }
        }
        let held = copies.table()?.held();
        let ns = timed(b, &mut copies, &ESTABLISHED_STAGES, window, rounds, false)?;
        let after = copies.table()?.held();
        ensure!(
            after == held,
            "established frames made or removed flows: {held} entries, then {after}"
        );
        let path = format!("established UDP, {flows} flows");
        push_rows(&mut out, &path, &ESTABLISHED_STAGES, &ns);
        if zipf == Some(flows) {
            b.generate_skewed(flows)?;
            let ns = timed(b, &mut copies, &ESTABLISHED_STAGES, window, rounds, false)?;
            let path = format!("established UDP, {flows} flows, Zipf s=1");
            push_rows(&mut out, &path, &ESTABLISHED_STAGES, &ns);
        }
    }

    let mut copies = Copies::load(&fw, super::NEW_FLOW_TABLE, &NEW_FLOW_STAGES)?;
    b.generate(true, 0)?;
    let ns = timed(b, &mut copies, &NEW_FLOW_STAGES, new_window, rounds, true)?;
    push_rows(&mut out, NEW_FLOW, &NEW_FLOW_STAGES, &ns);
    copies.detach()?;
    Ok(out)
}

/// Median ns per frame at each of `stages` and the whole path (last), `rounds` turns
/// each; with `clear`, the table is emptied before every window (new flows). The whole
/// path must deliver every frame to the sink as its flow says.
fn timed(
    b: &mut Bench<'_>,
    copies: &mut Copies,
    stages: &[(u32, &str)],
    window: Duration,
    rounds: usize,
    clear: bool,
) -> anyhow::Result<Vec<f64>> {
    let order: Vec<u32> = stages
        .iter()
        .map(|&(s, _)| s)
        .chain(std::iter::once(STAGE_NONE))
        .collect();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); order.len()];
    for _ in 0..rounds {
        for (i, &stage) in order.iter().enumerate() {
            if clear {
                // Nothing attached while the table empties.
                copies.detach()?;
                copies.table()?.clear();
            }
            copies.attach(stage)?;
            let s = b.measure(window)?;
            if stage == STAGE_NONE {
                ensure!(
                    s.received > 0 && s.wrong() == 0,
                    "the whole path did not forward as its flows say: {s:?}"
                );
            } else {
                // Every frame got as far as the stage and no further.
                ensure!(
                    s.sent > 0 && s.received + s.wrong() == 0,
                    "stage {stage}'s copy forwarded frames: its stop was never reached: {s:?}"
                );
            }
            ns[i].push(ns_per_frame(&s));
        }
    }
    Ok(ns.into_iter().map(median).collect())
}

/// One row per stage, then the whole path: ns per frame, and what each adds to the stage
/// before (the first stage, entering the program, carries the generator and the veth).
fn push_rows(out: &mut Vec<StageResult>, path: &str, stages: &[(u32, &str)], ns: &[f64]) {
    let labels = stages
        .iter()
        .map(|&(_, label)| label)
        .chain(std::iter::once(
            "redirect (devmap) and action counter: the whole path",
        ));
    let mut before = 0.0;
    for (&ns, label) in ns.iter().zip(labels) {
        out.push(StageResult {
            path: path.to_owned(),
            stage: label.to_owned(),
            ns,
            added: ns - before,
        });
        before = ns;
    }
}
