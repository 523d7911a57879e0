//! Starting (taking over what the last run left), viewing what a stopped run left, and
//! reloading a config while running. All three make their [`DataPath`] one way:
//! [`DataPath::new`].

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::Ebpf;
use pl_common::maps::DEFAULT_FLOW_ENTRIES;

use super::{
    Attached, DataPath, Dataplane, DataplaneError, StartOptions,
    attach::{attach_all, relink, unpin_link},
    load::{health_maps, load_with, open_maps, pin_kept_maps, pin_tails, register},
    report,
};
use crate::{
    apply::apply,
    flows,
    health::Checker,
    model::Model,
    neigh::{self, Resolver},
    plan::{Plan, Unhealthy},
    state::{Saved, State},
};

impl DataPath {
    /// The data path for `model`: a resolver for its targets and a plan leaving out
    /// `unhealthy` targets. MACs the maps hold count at once: kept ones need not wait
    /// for ARP. Health starts unknown.
    fn new(
        ebpf: &Ebpf,
        model: Model,
        unhealthy: &Unhealthy,
        revoked: Vec<u64>,
    ) -> Result<Self, DataplaneError> {
        let resolver = Resolver::new(&model).map_err(|source| DataplaneError::Arp { source })?;
        let plan = Plan::build(&model, &neigh::learned(ebpf, &model), unhealthy);
        Ok(Self {
            model,
            plan,
            resolver,
            health: Checker::default(),
            revoked,
        })
    }
}

/// The interfaces of `model`'s live networks, a network's id as its slot.
fn networks(model: &Model) -> impl Iterator<Item = Attached> + '_ {
    model
        .networks
        .iter()
        .zip(0u32..)
        .filter(|(n, _)| !n.removed)
        .map(|(n, slot)| Attached {
            name: n.interface.clone(),
            ifindex: n.ifindex,
            slot,
        })
}

/// Whether to keep what `prior` left (its ids, flow table, MACs and counters), or refuses
/// the start if its links or flow table cannot take this run.
fn takes_over(
    prior: Option<&Saved>,
    with_model: bool,
    opts: StartOptions<'_>,
    flow_entries: u32,
) -> Result<bool, DataplaneError> {
    let restore = |why: String| DataplaneError::Restore { why };
    // Observe mode keeps nothing worth carrying into a config run, or back.
    let keep = !opts.fresh && prior.is_some_and(|p| p.model.is_some() == with_model);
    let Some(p) = prior else {
        return Ok(keep);
    };
    if p.mode != opts.mode && !opts.fresh {
        return Err(restore(format!(
            "its links are in {} mode and a link keeps its mode; this run asks for {}",
            p.mode.name(),
            opts.mode.name()
        )));
    }
    if keep && p.flow_entries != flow_entries {
        return Err(restore(format!(
            "[limits] flow_table_size changed ({} -> {}) and a pinned flow table cannot be resized",
            p.flow_entries / 2,
            flow_entries / 2
        )));
    }
    Ok(keep)
}

/// Checks the pinned maps a start keeps, and says when another pl version left them.
fn check_kept(
    state: &State,
    prior: Option<&Saved>,
    flow_entries: u32,
) -> Result<(), DataplaneError> {
    for map in state.check_maps(flow_entries, true)? {
        tracing::info!(
            "counters in {map} start from zero: the pinned map has another shape (a pl that counts other things); flows are kept"
        );
    }
    if let Some(p) = prior.filter(|p| p.pl_version != env!("CARGO_PKG_VERSION")) {
        tracing::info!(
            "taking over the data plane of pl {} (this is pl {}): its maps have the shapes this version uses",
            p.pl_version,
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

/// Removes the flows `model` no longer allows, as AWS cuts a rejected endpoint's
/// connections; the rest are untouched. Tallies them by endpoint id in `revoked`;
/// returns how many went.
fn revoke_refused(ebpf: &mut Ebpf, model: &Model, revoked: &mut Vec<u64>) -> usize {
    let mut gone: Vec<u16> = Vec::new();
    if let Some(table) = flows::open(ebpf) {
        let flows = flows::revoke(&table, |k, v| {
            !model.allows(
                v.endpoint,
                k.network,
                Ipv4Addr::from(k.src_be.to_ne_bytes()),
            )
        });
        gone.extend(flows.iter().map(|f| f.forward.endpoint));
    }
    if let Some(table) = flows::open6(ebpf) {
        let flows = flows::revoke(&table, |k, v| {
            !model.allows6(v.endpoint, k.network, Ipv6Addr::from(k.src))
        });
        gone.extend(flows.iter().map(|f| f.forward.endpoint));
    }
    for id in &gone {
        let id = usize::from(*id);
        if revoked.len() <= id {
            revoked.resize(id + 1, 0);
        }
        revoked[id] += 1;
    }
    gone.len()
}

impl Dataplane {
    /// Resolves `names`, loads the program and attaches it to every interface, or to none.
    /// Observe mode: frames are counted and passed on.
    pub fn start(names: &[String], opts: StartOptions<'_>) -> Result<Self, DataplaneError> {
        let ifaces = super::resolve(names)?
            .into_iter()
            .zip(0u32..)
            .map(|((name, ifindex), slot)| Attached {
                name,
                ifindex,
                slot,
            })
            .collect();
        Self::boot(opts, None, ifaces)
    }

    /// Loads the program with the maps `model` implies and attaches it to every network's
    /// interface, or to none. Targets take flows once ARP has resolved them.
    pub fn start_model(model: Model, opts: StartOptions<'_>) -> Result<Self, DataplaneError> {
        Self::boot(opts, Some(model), Vec::new())
    }

    /// Takes over what the last run of the instance left (unless `opts.fresh`): its ids,
    /// flow table, learned MACs and counters, and its links, which get the new program.
    fn boot(
        opts: StartOptions<'_>,
        model: Option<Model>,
        observe: Vec<Attached>,
    ) -> Result<Self, DataplaneError> {
        let (state, warning) = State::open(opts.instance)?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let prior = state.saved()?;
        let flow_entries = model.as_ref().map_or(DEFAULT_FLOW_ENTRIES, |m| {
            m.flow_table_size.saturating_mul(2)
        });
        let keep = takes_over(prior.as_ref(), model.is_some(), opts, flow_entries)?;
        let kept = prior.as_ref().filter(|_| keep);
        let model = match (model, kept.and_then(|p| p.model.as_ref())) {
            (Some(m), Some(prev)) => Some(
                m.align(prev)
                    .map_err(|e| DataplaneError::Restore { why: e.to_string() })?,
            ),
            (m, _) => m,
        };
        // A cluster node serves nothing until the election says so (a restart must not
        // answer for zones another node took over meanwhile).
        let model = model.map(|mut m| {
            if m.cluster.is_some() {
                m.serving = Some(0);
            }
            m
        });
        if keep {
            check_kept(&state, kept, flow_entries)?;
        }
        let mut ebpf = load_with(Some(flow_entries), keep.then_some(&state))?;
        let (ifaces, data) = match model {
            Some(model) => {
                let revoked = kept.map(|p| p.revoked.clone()).unwrap_or_default();
                let mut d = DataPath::new(&ebpf, model, &Unhealthy::new(), revoked)?;
                apply(&mut ebpf, &d.plan, None)
                    .map_err(|source| DataplaneError::Apply { source })?;
                d.health.sync(&d.model, &mut health_maps(&mut ebpf)?);
                (networks(&d.model).collect(), Some(d))
            }
            None => {
                let names: Vec<(String, u32)> =
                    observe.into_iter().map(|a| (a.name, a.ifindex)).collect();
                (register(&mut ebpf, &names)?, None)
            }
        };
        relink(
            &mut ebpf,
            &ifaces,
            opts.mode,
            data.is_some(),
            &state,
            prior.as_ref(),
        )?;
        if !keep {
            state.unpin_maps()?;
            pin_kept_maps(&ebpf, &state)?;
        }
        pin_tails(&ebpf, &state)?;
        let dp = Self {
            ebpf,
            mode: opts.mode,
            ifaces,
            state,
            data,
            tombs: Default::default(),
        };
        dp.save(flow_entries)?;
        Ok(dp)
    }

    /// A read-only view of the data plane a stopped `pl run` of `instance` left in this
    /// network namespace: its pinned counters and flows, named by the saved model (target
    /// health is unknown). Loads no program and attaches nothing; None if nothing was left.
    pub fn left_behind(instance: &str) -> Result<Option<Self>, DataplaneError> {
        let state = State::locate(instance)?;
        let Some(saved) = state.saved()? else {
            return Ok(None);
        };
        state.check_maps(saved.flow_entries, false)?;
        let ebpf = open_maps(Some(saved.flow_entries), Some(&state))?;
        let data = saved
            .model
            .map(|model| DataPath::new(&ebpf, model, &Unhealthy::new(), saved.revoked))
            .transpose()?;
        Ok(Some(Self {
            ebpf,
            mode: saved.mode,
            ifaces: saved.interfaces,
            state,
            data,
            tombs: Default::default(),
        }))
    }

    /// Records what runs now, for the next start to take over.
    fn save(&self, flow_entries: u32) -> Result<(), DataplaneError> {
        self.state.save(&Saved {
            pl_version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.mode,
            interfaces: self.ifaces.clone(),
            flow_entries,
            model: self.data.as_ref().map(|d| d.model.clone()),
            revoked: self
                .data
                .as_ref()
                .map(|d| d.revoked.clone())
                .unwrap_or_default(),
        })?;
        Ok(())
    }

    /// Applies a new, validated model while running: what stays keeps its ids (and its
    /// flows), what is gone takes no new flows, what is new appears. New interfaces are
    /// attached after the maps know them; if one refuses, the maps are put back and the
    /// running configuration stays as it was. Returns what changed, in words.
    pub fn reload(&mut self, new: Model) -> Result<String, DataplaneError> {
        let Self {
            ebpf,
            mode,
            ifaces,
            state,
            data,
            ..
        } = self;
        let refused = |why: String| DataplaneError::Reload { why };
        let Some(d) = data.as_mut() else {
            return Err(refused("pl run was started without --config".to_owned()));
        };
        if new.flow_table_size != d.model.flow_table_size {
            return Err(refused(format!(
                "[limits] flow_table_size cannot change while running ({} -> {}): restart pl run",
                d.model.flow_table_size, new.flow_table_size
            )));
        }
        let model = new.align(&d.model).map_err(|e| refused(e.to_string()))?;
        // keepalived and flow sync were set up from the cluster at start.
        if model.cluster != d.model.cluster {
            return Err(refused(
                "[cluster] and [[node]] cannot change while running: restart pl run".to_owned(),
            ));
        }
        let was_live = |slot: u32| {
            d.model
                .networks
                .get(slot as usize)
                .is_some_and(|n| !n.removed)
        };
        let added: Vec<Attached> = networks(&model).filter(|a| !was_live(a.slot)).collect();
        let gone: Vec<u32> = (model.networks.iter().zip(&d.model.networks))
            .filter(|(n, p)| n.removed && !p.removed)
            .map(|(_, p)| p.ifindex)
            .collect();
        let mut next = DataPath::new(ebpf, model, &d.health.unhealthy(), Vec::new())?;
        let attached = apply(ebpf, &next.plan, Some(&d.plan))
            .map_err(|source| DataplaneError::Apply { source })
            .and_then(|()| attach_all(ebpf, &added, *mode, true, state));
        if let Err(e) = attached {
            // Put back what was written before the failure: the maps match the shadow again.
            let _ = apply(ebpf, &d.plan, Some(&next.plan));
            return Err(e);
        }
        let revoked = revoke_refused(ebpf, &next.model, &mut d.revoked);
        for ifindex in &gone {
            unpin_link(state, *ifindex);
        }
        ifaces.retain(|a| !gone.contains(&a.ifindex));
        ifaces.extend(added.iter().cloned());
        let changes = (ifaces.len(), added.len(), gone.len(), revoked);
        let summary = report::reloaded(&d.model, &next.model, changes);
        let mut probes = health_maps(ebpf)?;
        next.health = std::mem::take(&mut d.health);
        next.health.sync(&next.model, &mut probes);
        next.revoked = std::mem::take(&mut d.revoked);
        *d = next;
        let flow_entries = d.model.flow_table_size.saturating_mul(2);
        self.save(flow_entries)?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Mode;

    fn saved(mode: Mode, flow_entries: u32) -> Saved {
        Saved {
            pl_version: env!("CARGO_PKG_VERSION").to_owned(),
            mode,
            interfaces: Vec::new(),
            flow_entries,
            model: None,
            revoked: Vec::new(),
        }
    }

    fn opts(mode: Mode, fresh: bool) -> StartOptions<'static> {
        StartOptions {
            instance: "t",
            mode,
            fresh,
        }
    }

    #[test]
    fn a_link_keeps_its_mode_unless_fresh() {
        let prior = saved(Mode::Skb, 8);
        let e = takes_over(Some(&prior), false, opts(Mode::Native, false), 8).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "taking over the data plane the last pl run left: its links are in skb mode and a link keeps its mode; this run asks for native; `pl run --fresh` starts over (dropping live flows) and `pl down` removes it"
        );
        let keep = takes_over(Some(&prior), false, opts(Mode::Native, true), 8).expect("fresh");
        assert!(!keep);
    }

    #[test]
    fn a_pinned_flow_table_keeps_its_size() {
        let prior = saved(Mode::Native, 8);
        let e =
            takes_over(Some(&prior), false, opts(Mode::Native, false), 12).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "taking over the data plane the last pl run left: [limits] flow_table_size changed (4 -> 6) and a pinned flow table cannot be resized; `pl run --fresh` starts over (dropping live flows) and `pl down` removes it"
        );
        assert!(takes_over(Some(&prior), false, opts(Mode::Native, false), 8).expect("same"));
        // Observe mode and a config run keep nothing of each other.
        assert!(!takes_over(Some(&prior), true, opts(Mode::Native, false), 12).expect("new"));
        assert!(!takes_over(None, true, opts(Mode::Native, false), 12).expect("first"));
    }
}
