//! The corpus of bad configs, shared by `pl run`/`pl reload` (kernel) and `pl check`
//! (no kernel) tests: each a small change to the lab's config and what its error names.

/// (what is wrong, replace this, with this, what the error must name). An empty "replace"
/// appends.
pub const CORPUS: &[(&str, &str, &str, &[&str])] = &[
    (
        "a network name used twice",
        "name = \"globex\"\ninterface = \"fw-globex\"",
        "name = \"acme\"\ninterface = \"fw-globex\"",
        &["[[network]] \"acme\": name", "used twice"],
    ),
    (
        "an interface that does not exist",
        "interface = \"fw-prov\"",
        "interface = \"fw-nope\"",
        &["[[network]] \"prov\": interface", "fw-nope"],
    ),
    (
        "one interface for two networks",
        "interface = \"fw-globex\"",
        "interface = \"fw-acme\"",
        &["[[network]] \"globex\": interface", "fw-acme"],
    ),
    (
        "a route whose router is off-link",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.1\" }, { to = \"10.9.0.0/28\", via = \"10.9.0.2\" }]",
        &[
            "[[network]] \"prov\": routes.via",
            "10.9.0.1 is not on-link",
        ],
    ),
    (
        "a route to a prefix that is no prefix",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.1/24\", via = \"10.9.0.1\" }]",
        &["[[network]] \"prov\": routes.to", "10.60.0.1/24"],
    ),
    (
        "a route listed twice",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.1\" }, { to = \"10.60.0.0/24\", via = \"10.9.0.2\" }]",
        &["[[network]] \"prov\": routes.to", "listed twice"],
    ),
    (
        "a route through an NLB address",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.250\" }]",
        &[
            "[[service]] \"billing\": nlb_addresses",
            "10.9.0.250 is already the next hop",
        ],
    ),
    (
        "a service on a network that does not exist",
        "network = \"prov\"\nnlb",
        "network = \"nowhere\"\nnlb",
        &["[[service]] \"billing\": network", "nowhere"],
    ),
    (
        "an NLB address that is no address",
        "10.9.0.250",
        "10.9.0.999",
        &["[[service]] \"billing\": nlb_addresses", "10.9.0.999"],
    ),
    (
        "two NLB addresses in one zone",
        "\"10.9.0.251\", zone = \"z2\"",
        "\"10.9.0.251\", zone = \"z1\"",
        &[
            "[[service]] \"billing\": nlb_addresses",
            "two NLB addresses",
        ],
    ),
    (
        "a target in a zone with no NLB address",
        "{ ip = \"10.9.0.12\", zone = \"z2\" }",
        "{ ip = \"10.9.0.12\", zone = \"z3\" }",
        &["[[service]] \"billing\": targets", "z3"],
    ),
    (
        "a target that is also an NLB address",
        "{ ip = \"10.9.0.12\", zone = \"z2\" }",
        "{ ip = \"10.9.0.250\", zone = \"z2\" }",
        &["[[service]] \"billing\": targets", "10.9.0.250"],
    ),
    (
        "a listener protocol pl does not carry",
        "protocol = \"udp\"",
        "protocol = \"sctp\"",
        &["[[service]] \"billing\": listeners.protocol", "sctp"],
    ),
    (
        "listener port 0",
        "port = 443",
        "port = 0",
        &["[[service]] \"billing\": listeners.port", "port 0"],
    ),
    (
        "a listener given twice",
        "{ protocol = \"udp\", port = 53, target_port = 5353 }",
        "{ protocol = \"tcp\", port = 443 }",
        &["[[service]] \"billing\": listeners.port", "twice"],
    ),
    (
        "no listeners",
        "listeners = [{ protocol = \"tcp\", port = 443, target_port = 8443 }, { protocol = \"udp\", port = 53, target_port = 5353 }]",
        "listeners = []",
        &["[[service]] \"billing\": listeners", "must not be empty"],
    ),
    (
        "a field the schema does not have",
        "cross_zone = false",
        "cross_zone = false\ncolour = \"blue\"",
        &["colour"],
    ),
    (
        "a health check timeout not shorter than its interval",
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 2, timeout_ms = 5000 }",
        &[
            "[[service]] \"billing\": health_check.timeout_ms",
            "shorter",
        ],
    ),
    (
        "a health check protocol pl does not send",
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { protocol = \"http\" }",
        &["[[service]] \"billing\": health_check.protocol", "http"],
    ),
    (
        "an endpoint of a service that does not exist",
        "service = \"billing\"\nnetwork = \"globex\"",
        "service = \"payroll\"\nnetwork = \"globex\"",
        &["[[endpoint]] \"globex-billing\": service", "payroll"],
    ),
    (
        "an allowed source with host bits set",
        "\"10.0.0.0/25\"",
        "\"10.0.0.1/25\"",
        &[
            "[[endpoint]] \"acme-billing\": allowed_sources",
            "10.0.0.1/25",
        ],
    ),
    (
        "an endpoint address in a zone with no NLB address",
        "zone = \"z2\" }]\nallowed_sources",
        "zone = \"z9\" }]\nallowed_sources",
        &["[[endpoint]] \"acme-billing\": addresses", "z9"],
    ),
    (
        "an endpoint name used twice",
        "name = \"globex-billing\"",
        "name = \"acme-billing\"",
        &["[[endpoint]] \"acme-billing\": name", "used twice"],
    ),
    (
        "an endpoint address another endpoint of its network holds",
        "",
        "[[endpoint]]\nname = \"acme-again\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }]\n",
        &["[[endpoint]] \"acme-again\": addresses", "10.0.0.100"],
    ),
    (
        "an inverted SNAT range",
        "",
        "[limits]\nsnat_port_min = 5000\nsnat_port_max = 4000\n",
        &["[limits]", "snat_port"],
    ),
    (
        "a limit the schema does not have",
        "",
        "[limits]\nflow_table_sizes = 5\n",
        &["flow_table_sizes"],
    ),
    (
        "a zone with two primaries",
        "",
        "[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n\n[[node]]\nname = \"fw-b\"\naddress = \"192.168.100.2\"\nzones = [\"z1\"]\n",
        &["[[node]] \"fw-b\": zones", "zone \"z1\" has two primaries"],
    ),
    (
        "a node named twice",
        "",
        "[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.2\"\n",
        &["[[node]] \"fw-a\": name"],
    ),
    (
        "a backup zone no address is in",
        "",
        "[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\nbackup_zones = [\"z9\"]\n",
        &["[[node]] \"fw-a\": backup_zones", "unknown zone \"z9\""],
    ),
    (
        "a zone with no primary",
        "",
        "[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\"]\nbackup_zones = [\"z2\"]\n",
        &["[cluster]: node", "zone \"z2\" has no node"],
    ),
    (
        "a cluster without the key its nodes share",
        "",
        "[cluster]\ninterface = \"mgmt0\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n",
        &[
            "[cluster]: secret_file",
            "required: the key every node shares",
        ],
    ),
    (
        "a cluster key given by a relative path",
        "",
        "[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n",
        &["[cluster]: secret_file", "must be an absolute path"],
    ),
    (
        "a node without a cluster",
        "",
        "[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n",
        &["[[node]] \"fw-a\": name", "needs a [cluster] section"],
    ),
    (
        "a network's interface as the management interface",
        "",
        "[cluster]\ninterface = \"fw-prov\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\", \"z2\"]\n",
        &[
            "[cluster]: interface",
            "the management network must be its own",
        ],
    ),
    (
        "broken TOML",
        "name = \"acme\"",
        "name = \"acme",
        // A syntax error has no section: file and line are what there is.
        &["invalid basic string"],
    ),
    (
        "a service whose targets are of two families",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"fd00:9::fa\", zone = \"z1\" }, { ip = \"10.9.0.249\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::11\", zone = \"z1\" }, { ip = \"10.9.0.13\", zone = \"z1\" }]\n",
        &["[[service]] \"v6\": targets", "share one address family"],
    ),
    (
        "an IPv6 target in a zone with no IPv6 NLB address",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"10.9.0.249\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::11\", zone = \"z1\" }]\n",
        &["[[service]] \"v6\": targets", "no IPv6 NLB address"],
    ),
    (
        "two IPv6 NLB addresses in one zone",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"fd00:9::fa\", zone = \"z1\" }, { ip = \"fd00:9::fb\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::11\", zone = \"z1\" }]\n",
        &[
            "[[service]] \"v6\": nlb_addresses",
            "two IPv6 NLB addresses",
        ],
    ),
    (
        "an IPv6 address that is an NLB address and a target",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"fd00:9::fa\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::fa\", zone = \"z1\" }]\n",
        &[
            "[[service]] \"v6\": targets",
            "fd00:9::fa is already an NLB address",
        ],
    ),
    (
        // Translated flows key their IPv4 side by mapped addresses: a configured one could
        // be mistaken for one.
        "an IPv4-mapped IPv6 endpoint address",
        "",
        "[[endpoint]]\nname = \"acme-v6\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"::ffff:10.0.0.99\", zone = \"z1\" }]\n",
        &[
            "[[endpoint]] \"acme-v6\": addresses",
            "::ffff:10.0.0.99 is an IPv4-mapped IPv6 address: write it as IPv4",
        ],
    ),
    (
        "two IPv6 endpoint addresses in one zone",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"fd00:9::fa\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::11\", zone = \"z1\" }]\n\n[[endpoint]]\nname = \"acme-v6\"\nservice = \"v6\"\nnetwork = \"acme\"\naddresses = [{ ip = \"fd00::64\", zone = \"z1\" }, { ip = \"fd00::65\", zone = \"z1\" }]\n",
        &["[[endpoint]] \"acme-v6\": addresses", "two IPv6 addresses"],
    ),
    (
        "an IPv6 allowed source with host bits set",
        "",
        "[[service]]\nname = \"v6\"\nnetwork = \"prov\"\nnlb_addresses = [{ ip = \"fd00:9::fa\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"fd00:9::11\", zone = \"z1\" }]\n\n[[endpoint]]\nname = \"acme-v6\"\nservice = \"v6\"\nnetwork = \"acme\"\naddresses = [{ ip = \"fd00::64\", zone = \"z1\" }]\nallowed_sources = [\"fd00::1/64\"]\n",
        &["[[endpoint]] \"acme-v6\": allowed_sources", "fd00::1/64"],
    ),
    (
        "an IPv6 route through an IPv4 router",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"fd00:60::/48\", via = \"10.9.0.1\" }]",
        &[
            "[[network]] \"prov\": routes.via",
            "an IPv6 route's router must be IPv6",
        ],
    ),
    (
        "a DNS address that is also an endpoint address",
        "interface = \"fw-acme\"",
        "interface = \"fw-acme\"\ndns_addresses = [\"10.0.0.100\"]",
        &[
            "[[network]] \"acme\": dns_addresses",
            "10.0.0.100 is already",
        ],
    ),
    (
        "a private DNS name used by two services",
        "",
        "[[service]]\nname = \"pay\"\nnetwork = \"prov\"\nprivate_dns_name = \"Billing.Example.com\"\nnlb_addresses = [{ ip = \"10.9.0.240\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]\n\n[[service]]\nname = \"pay2\"\nnetwork = \"prov\"\nprivate_dns_name = \"Billing.Example.com\"\nnlb_addresses = [{ ip = \"10.9.0.241\", zone = \"z1\" }]\nacceptance_required = false\nallowed_principals = [\"*\"]\nlisteners = [{ protocol = \"tcp\", port = 8080 }]\ntargets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]\n",
        &[
            "[[service]] \"pay2\": private_dns_name",
            "already service \"pay\"'s private name",
        ],
    ),
    (
        "a bad DNS domain",
        "",
        "[dns]\ndomain = \"-vpce.internal\"\n",
        &["[dns]: domain", "\"-vpce\""],
    ),
];

/// `original` with `replace` replaced by `with` (appended if `replace` is empty).
pub fn bad_config(original: &str, replace: &str, with: &str) -> String {
    if replace.is_empty() {
        return format!("{original}\n{with}");
    }
    assert!(
        original.contains(replace),
        "the corpus no longer matches the lab config: {replace:?}"
    );
    original.replacen(replace, with, 1)
}

/// The corpus entries only the host can judge (`pl check` warns, `--strict` refuses).
pub const HOST_ONLY: &[&str] = &["an interface that does not exist"];
