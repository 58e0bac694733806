//! The Kubernetes manifests against the crates they deploy: the kind
//! overlay is rendered with kubectl kustomize, as a user applies it, and
//! every service crate is checked in it. (Schemas and checkov run in
//! build-support/check-manifests.sh.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::root;

/// Each deployed service: its crate's default port and call table. The
/// gateway is called from outside, so it has no table.
fn services() -> Vec<(&'static str, u16, Option<kit::authz::Callers>)> {
    vec![
        ("catalog", catalog::DEFAULT_PORT, Some(catalog::CALLERS)),
        ("inventory", inventory::DEFAULT_PORT, Some(inventory::CALLERS)),
        ("payments", payments::DEFAULT_PORT, Some(payments::CALLERS)),
        ("shipping", shipping::DEFAULT_PORT, Some(shipping::CALLERS)),
        ("orders", orders::DEFAULT_PORT, Some(orders::CALLERS)),
        ("workflow", workflow::DEFAULT_PORT, Some(workflow::CALLERS)),
        ("apikeys", apikeys::DEFAULT_PORT, Some(apikeys::CALLERS)),
        ("gateway", gateway::DEFAULT_PORT, None),
    ]
}

/// Service crates not deployed, and why.
const NOT_DEPLOYED: &[(&str, &str)] = &[(
    "tracesink",
    "the local stand-in for Jaeger, which the cluster runs instead",
)];

/// The stateless services an autoscaler scales.
const SCALED: &[&str] = &["gateway", "catalog", "orders"];

/// The kind overlay, rendered, as JSON objects.
fn rendered() -> Vec<Value> {
    let root = root();
    let render = std::process::Command::new("kubectl")
        .args(["kustomize", "k8s/overlays/kind"])
        .current_dir(&root)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        render.status.success(),
        "{}",
        String::from_utf8_lossy(&render.stderr)
    );
    // YAML to JSON with the PyYAML that install-tools.sh puts beside checkov.
    let python = root.join(".tools/k8s-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run bash build-support/install-tools.sh",
        python.display()
    );
    let mut convert = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    std::io::Write::write_all(&mut convert.stdin.take().unwrap(), &render.stdout).unwrap();
    let out = convert.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("JSON from the rendered YAML")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn get<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| panic!("no {kind} {name} in the kind overlay"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The environment variables a service reads: every `[env: NAME=]` of its
/// `--help`, and the OpenTelemetry variables the kit reads.
fn variables_read(service: &str) -> BTreeSet<String> {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ferrymesh"))
        .args(["serve", service, "--", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut read: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .map(str::to_string)
        .collect();
    assert!(read.len() > 10, "no variables in {service} --help:\n{help}");
    // Every file of the kit, its modules' folders too.
    let mut paths = vec![root().join("services/kit/src")];
    while let Some(path) = paths.pop() {
        if path.is_dir() {
            paths.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for word in source.split(|c: char| !(c.is_ascii_uppercase() || c == '_')) {
            if word.starts_with("OTEL_") && word.len() > 5 {
                read.insert(word.to_string());
            }
        }
    }
    read
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

fn duration(text: &str) -> Duration {
    kit::duration::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_service_crate_is_deployed_as_it_runs() {
    let objects = rendered();

    // Every service crate is deployed, or said not to be and why.
    let deployed: BTreeSet<&str> = services().iter().map(|s| s.0).collect();
    for dir in std::fs::read_dir(root().join("services")).unwrap() {
        let name = dir.unwrap().file_name().to_string_lossy().to_string();
        if name.starts_with("kit") {
            continue;
        }
        assert!(
            deployed.contains(name.as_str()) || NOT_DEPLOYED.iter().any(|(n, _)| *n == name),
            "the service crate {name} has no Deployment in k8s/"
        );
    }

    // The images are the ones deploy-kind.sh builds from the Dockerfile.
    let script = std::fs::read_to_string(root().join("k8s/deploy-kind.sh")).unwrap();
    assert!(script.contains(r#"-t "ferrymesh/$service:$TAG""#));
    let listed = script
        .lines()
        .find_map(|l| l.strip_prefix("SERVICES=("))
        .expect("SERVICES=( in deploy-kind.sh");
    let built: BTreeSet<&str> = listed.trim_end_matches(')').split_whitespace().collect();
    assert_eq!(
        built, deployed,
        "deploy-kind.sh builds exactly the deployed services"
    );
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"--bin "${SERVICE}""#));

    for (name, port, _) in services() {
        let admin = port + 1000;
        let deployment = get(&objects, "Deployment", name);
        let pod = &deployment["spec"]["template"]["spec"];
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], name);
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        let container = &containers[0];
        assert_eq!(text(&container["image"]), format!("ferrymesh/{name}:dev"));

        // Ports: the crate's default, and its admin port beside it.
        let ports: BTreeMap<&str, u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (text(&p["name"]), p["containerPort"].as_u64().unwrap()))
            .collect();
        assert_eq!(ports["grpc"], u64::from(port), "{name}");
        assert_eq!(ports["admin"], u64::from(admin), "{name}");

        // Configuration: from its ConfigMap and Secrets, every variable one it reads.
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for from in container["envFrom"].as_array().unwrap() {
            let map = get(&objects, "ConfigMap", text(&from["configMapRef"]["name"]));
            for (key, value) in map["data"].as_object().unwrap() {
                env.insert(key.clone(), text(value).to_string());
            }
        }
        for var in container["env"].as_array().unwrap() {
            let value = match var.get("value") {
                Some(v) => text(v).to_string(),
                None => format!(
                    "secret:{}/{}",
                    text(&var["valueFrom"]["secretKeyRef"]["name"]),
                    text(&var["valueFrom"]["secretKeyRef"]["key"])
                ),
            };
            env.insert(text(&var["name"]).to_string(), value);
        }
        let read = variables_read(name);
        for key in env.keys() {
            assert!(
                read.contains(key),
                "{name} is given {key}, which it does not read"
            );
        }
        let var = |suffix: &str| env.get(&format!("FERRYMESH_{}_{suffix}", name.to_uppercase()));
        assert_eq!(var("LISTEN").unwrap(), &format!("0.0.0.0:{port}"));
        assert_eq!(var("ADMIN_LISTEN").unwrap(), &format!("0.0.0.0:{admin}"));
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4317");

        // Probes: gRPC health, on the admin port (the gateway: its public, plaintext port).
        let probe_port = if name == "gateway" { port } else { admin };
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(
                container[probe]["grpc"]["port"].as_u64(),
                Some(u64::from(probe_port)),
                "{name} {probe}"
            );
        }

        // Resources and a locked-down container.
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][kind][resource].is_string(),
                    "{name} {kind}.{resource}"
                );
            }
        }
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() >= 10000);

        // Stopping: NOT_SERVING for the drain delay while endpoints let go,
        // then calls in flight finish, all inside the grace period.
        let drain = duration(var("DRAIN_DELAY").unwrap());
        let shutdown = duration(var("SHUTDOWN_TIMEOUT").unwrap());
        assert!(
            drain >= Duration::from_secs(5),
            "{name}: a drain delay as long as a DNS refresh"
        );
        let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
        assert!(
            grace > drain + shutdown,
            "{name}: grace {grace:?} <= {drain:?} + {shutdown:?}"
        );

        // Rollouts never go below the asked replicas, and every service
        // (workflow too, through leases) runs at least two.
        let strategy = &deployment["spec"]["strategy"];
        assert_eq!(strategy["type"], "RollingUpdate", "{name}");
        assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0, "{name}");
        // Available only after 5 s ready, and spread over the nodes.
        assert!(
            deployment["spec"]["minReadySeconds"].as_u64().unwrap_or(0) >= 5,
            "{name}"
        );
        let spread = &pod["topologySpreadConstraints"][0];
        assert_eq!(spread["topologyKey"], "kubernetes.io/hostname", "{name}");
        assert_eq!(
            spread["labelSelector"]["matchLabels"]["app.kubernetes.io/name"], name,
            "{name}"
        );

        // What an autoscaler scales sets no replicas (an apply would reset
        // them); its autoscaler keeps two at least.
        match find(&objects, "HorizontalPodAutoscaler", name) {
            Some(hpa) => {
                assert!(
                    deployment["spec"].get("replicas").is_none(),
                    "{name}: replicas beside its autoscaler"
                );
                assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2, "{name}");
                // It scales on a CPU share of a request that means something.
                let request = text(&pod["containers"][0]["resources"]["requests"]["cpu"]);
                let millicores: u64 = request
                    .strip_suffix('m')
                    .map_or_else(|| request.parse::<u64>().unwrap() * 1000, |m| m.parse().unwrap());
                let target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
                    .as_u64()
                    .unwrap();
                assert!(
                    millicores * target / 100 >= 100,
                    "{name}: scales at {}m",
                    millicores * target / 100
                );
            }
            None => assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2, "{name}"),
        }

        // Its own certificate only, and the TLS paths inside that mount.
        let volumes = pod["volumes"].as_array().unwrap();
        let tls = volumes.iter().find(|v| v["name"] == "tls").expect("a tls volume");
        assert_eq!(text(&tls["secret"]["secretName"]), format!("mesh-tls-{name}"));
        for file in ["CERT", "KEY", "CA"] {
            assert!(
                var(&format!("TLS_{file}"))
                    .unwrap()
                    .starts_with("/etc/ferrymesh/tls/")
            );
        }

        // A Service on the same port; called services are headless.
        let service = get(&objects, "Service", name);
        assert_eq!(service["spec"]["selector"]["app.kubernetes.io/name"], name);
        assert_eq!(service["spec"]["ports"][0]["port"], u64::from(port));
        if name != "gateway" {
            assert_eq!(service["spec"]["clusterIP"], "None", "{name} is called: headless");
        }
        let budget = get(&objects, "PodDisruptionBudget", name);
        assert_eq!(
            budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
            name
        );
        assert_eq!(
            budget["spec"]["minAvailable"], 1,
            "{name}: an eviction leaves one"
        );
        assert_eq!(
            find(&objects, "HorizontalPodAutoscaler", name).is_some(),
            SCALED.contains(&name),
            "{name}: an autoscaler exactly for the stateless services"
        );

        // Upstreams: https, to a headless Service on its port.
        for (key, value) in &env {
            // (Jaeger's UI is a link the console shows a browser, not an upstream.)
            if !(key.ends_with("_URL") || key.ends_with("_ENDPOINTS"))
                || key.ends_with("DATABASE_URL")
                || key.ends_with("JAEGER_URL")
            {
                continue;
            }
            for url in value.split(';').map(|e| e.rsplit('=').next().unwrap()) {
                let rest = url
                    .strip_prefix("https://")
                    .unwrap_or_else(|| panic!("{key}: {url} is not mTLS"));
                let (host, called_port) = rest.split_once(':').unwrap();
                let (_, expected, _) = services().into_iter().find(|s| s.0 == host).unwrap();
                assert_eq!(called_port, expected.to_string(), "{key}");
            }
        }
    }
}

#[test]
fn network_policies_allow_exactly_the_call_table() {
    let objects = rendered();
    let policies: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "NetworkPolicy").collect();
    // Everything is denied unless a policy allows it.
    let deny = get(&objects, "NetworkPolicy", "default-deny-ingress");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert!(deny["spec"].get("ingress").is_none());

    for (name, port, callers) in services() {
        // Who may reach the gRPC port, across every policy that selects the pods.
        let mut allowed: BTreeSet<String> = BTreeSet::new();
        let mut anyone = false;
        for policy in &policies {
            let selects = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == name
                || policy["spec"]["podSelector"] == serde_json::json!({});
            if !selects {
                continue;
            }
            for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
                let on_port = rule["ports"]
                    .as_array()
                    .is_none_or(|ports| ports.iter().any(|p| p["port"] == u64::from(port)));
                if !on_port {
                    continue;
                }
                for from in rule["from"].as_array().expect("every rule names who") {
                    if from.get("ipBlock").is_some() || from.get("namespaceSelector").is_some() {
                        anyone = true;
                    }
                    for expression in from["podSelector"]["matchExpressions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        assert_eq!(expression["key"], "app.kubernetes.io/name");
                        assert_eq!(expression["operator"], "In");
                        for v in expression["values"].as_array().unwrap() {
                            allowed.insert(text(v).to_string());
                        }
                    }
                    if let Some(label) = from["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                    {
                        allowed.insert(label.to_string());
                    }
                }
            }
        }
        match callers {
            // Only the gateway is reachable from outside the namespace.
            None => assert!(anyone, "{name} is the way in"),
            Some(table) => {
                let expected: BTreeSet<String> = table
                    .iter()
                    .map(|(who, _)| who.to_string())
                    .filter(|who| who != kit::authz::OPERATOR)
                    .collect();
                assert!(!anyone, "{name} is reachable from outside the namespace");
                assert_eq!(
                    allowed, expected,
                    "{name}: the network allows what the call table does"
                );
            }
        }
    }
}

/// Where each workload's egress may go, across every policy that selects
/// it: (the peer's name, port). DNS, to kube-dns only, is checked apart.
fn egress_of(objects: &[Value], name: &str) -> BTreeSet<(String, u64)> {
    let mut allowed = BTreeSet::new();
    for policy in objects.iter().filter(|o| o["kind"] == "NetworkPolicy") {
        let selects = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == name
            || policy["spec"]["podSelector"] == serde_json::json!({});
        if !selects {
            continue;
        }
        for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
            let peers = rule["to"].as_array().expect("every egress rule names where");
            for peer in peers {
                assert!(
                    peer.get("ipBlock").is_none(),
                    "{name}: egress to addresses, not workloads"
                );
                if peer["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns" {
                    assert_eq!(
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                        "kube-system"
                    );
                    continue;
                }
                let to = text(&peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]).to_string();
                assert!(
                    !to.is_empty() && peer.get("namespaceSelector").is_none(),
                    "{name}: {peer}"
                );
                for port in rule["ports"]
                    .as_array()
                    .expect("every egress rule names its ports")
                {
                    allowed.insert((to.clone(), port["port"].as_u64().unwrap()));
                }
            }
        }
    }
    allowed
}

/// Egress is denied but for DNS; each service reaches exactly the services
/// whose call tables name it (on their ports), its database, and the trace
/// collector; the gateway also every service's admin port (the console).
#[test]
fn egress_allows_exactly_the_callees_the_database_and_the_collector() {
    let objects = rendered();
    let deny = get(&objects, "NetworkPolicy", "default-deny-egress");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert_eq!(deny["spec"]["policyTypes"], serde_json::json!(["Egress"]));
    assert!(deny["spec"].get("egress").is_none());
    let all = services();
    for (name, _, _) in &all {
        let mut expected: BTreeSet<(String, u64)> = all
            .iter()
            .filter(|(_, _, callers)| callers.is_some_and(|c| c.iter().any(|(who, _)| who == name)))
            .map(|(callee, port, _)| (callee.to_string(), u64::from(*port)))
            .collect();
        if *name == "gateway" {
            for (service, port, _) in all.iter().filter(|s| s.0 != "gateway") {
                expected.insert((service.to_string(), u64::from(port + 1000)));
            }
        } else {
            expected.insert(("postgres".into(), 5432));
        }
        expected.insert(("jaeger".into(), 4317));
        assert_eq!(egress_of(&objects, name), expected, "{name}'s egress");
    }
    // PostgreSQL and Jaeger reach nothing but DNS.
    for name in ["postgres", "jaeger"] {
        assert!(egress_of(&objects, name).is_empty(), "{name}");
    }
}

/// The connection budget: every service's pool (`DB_POOL_SIZE`, plus the
/// one connection it migrates on) times its replicas at their most (its
/// autoscaler's maximum, or its replica count) fits in PostgreSQL's
/// `max_connections`, less the connections reserved for superusers.
#[test]
fn every_pool_at_its_autoscalers_maximum_fits_in_postgresql() {
    const SUPERUSER_RESERVED: i64 = 3;
    let objects = rendered();
    let postgres = get(&objects, "StatefulSet", "postgres");
    let args: Vec<&str> = postgres["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let max_connections: i64 = args
        .iter()
        .find_map(|a| a.strip_prefix("max_connections="))
        .map_or(100, |n| n.parse().unwrap());
    let mut budget = Vec::new();
    for (service, _, _) in services().into_iter().filter(|(s, _, _)| *s != "gateway") {
        let config = get(&objects, "ConfigMap", &format!("{service}-config"));
        let variable = format!("FERRYMESH_{}_DB_POOL_SIZE", service.to_uppercase());
        let pool: i64 = text(&config["data"][&variable]).parse().unwrap_or(16);
        let deployment = get(&objects, "Deployment", service);
        let replicas = objects
            .iter()
            .find(|o| {
                o["kind"] == "HorizontalPodAutoscaler" && o["spec"]["scaleTargetRef"]["name"] == service
            })
            .map_or(&deployment["spec"]["replicas"], |hpa| &hpa["spec"]["maxReplicas"])
            .as_i64()
            .unwrap_or(1);
        budget.push((service, pool, replicas, (pool + 1) * replicas));
    }
    let total: i64 = budget.iter().map(|b| b.3).sum();
    assert!(
        total <= max_connections - SUPERUSER_RESERVED,
        "{total} connections at the autoscalers' maxima, but PostgreSQL takes {max_connections} \
         ({SUPERUSER_RESERVED} reserved): {budget:?}"
    );
}

#[test]
fn each_service_has_its_own_database_and_user() {
    let objects = rendered();
    let secret = get(&objects, "Secret", "database-urls");
    let urls: BTreeMap<String, String> = secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), base64(text(v))))
        .collect();
    let mut users = BTreeSet::new();
    let mut databases = BTreeSet::new();
    for (name, _, _) in services() {
        let deployment = get(&objects, "Deployment", name);
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let from_secret = env
            .iter()
            .find(|v| text(&v["name"]) == format!("FERRYMESH_{}_DATABASE_URL", name.to_uppercase()));
        if name == "gateway" {
            assert!(from_secret.is_none(), "the gateway keeps no database");
            continue;
        }
        let reference = &from_secret.expect("a database URL")["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "database-urls");
        let url = &urls[text(&reference["key"])];
        let rest = url.strip_prefix("postgres://").expect("a PostgreSQL URL");
        let (credentials, location) = rest.split_once('@').unwrap();
        let (user, password) = credentials.split_once(':').unwrap();
        let database = location.rsplit('/').next().unwrap();
        assert!(location.starts_with("postgres:5432/"), "{url}");
        assert_eq!(
            (user, database),
            (name, name),
            "{name}: its own user and database"
        );
        assert!(!password.is_empty());
        users.insert(user.to_string());
        databases.insert(database.to_string());
    }
    assert_eq!(users.len(), services().len() - 1);
    assert_eq!(databases.len(), services().len() - 1);
    // PostgreSQL makes them from the same Secret at its first start.
    let postgres = get(&objects, "StatefulSet", "postgres");
    let volumes = postgres["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "database-urls")
    );
    let init = get(&objects, "ConfigMap", "postgres-init");
    let script = text(&init["data"]["10-ferrymesh-databases.sh"]);
    // The script, run on the Secret's URLs with a psql that records what
    // it is asked, makes each user and database with its password.
    let dir = tempfile::tempdir().unwrap();
    let (urls_dir, bin) = (dir.path().join("urls"), dir.path().join("bin"));
    std::fs::create_dir_all(&urls_dir).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for (key, url) in &urls {
        std::fs::write(urls_dir.join(key), url).unwrap();
    }
    let log = dir.path().join("psql.log");
    std::fs::write(
        bin.join("psql"),
        format!(
            "#!/bin/bash\necho \"$*\" >> {}\ncat >> {}\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("psql"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ran = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("DATABASE_URLS_DIR", &urls_dir)
        .env("POSTGRES_USER", "postgres")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let asked = std::fs::read_to_string(&log).unwrap();
    for (name, url) in &urls {
        let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
        assert!(
            asked.contains(&format!(
                "-v user={name} -v password={password} -v database={name}"
            )),
            "{asked}"
        );
    }
    assert_eq!(
        asked
            .matches("CREATE DATABASE :\"database\" OWNER :\"user\"")
            .count(),
        urls.len()
    );
}

/// Databases and roles made for one test on the machine's PostgreSQL,
/// dropped when it ends however it ends.
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("psql")
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
                .args(["-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .args(["-c", &format!("DROP ROLE IF EXISTS {name}")])
                .output();
        }
    }
}

/// The kind overlay's configuration, run: PostgreSQL's init script makes
/// the databases and users on the machine's real server, each service runs
/// with exactly the variables and Secrets its Deployment gives it (names
/// and ports moved to loopback, and files to this test's directory), under
/// mutual TLS with certificates from `ferrymesh certs`, and an order placed
/// through the gateway is confirmed by the saga. The kubelet's probes, as
/// configured, find every service SERVING.
#[tokio::test]
async fn the_kind_configuration_runs_the_saga() {
    use orders::pb::ferrymesh::orders::v2 as opb;

    let objects = rendered();
    let secret = |name: &str| -> BTreeMap<String, String> {
        get(&objects, "Secret", name)["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), base64(text(v))))
            .collect()
    };
    let mut secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for name in ["database-urls", "ferrymesh-secrets"] {
        secrets.insert(name.to_string(), secret(name));
    }
    let dir = tempfile::tempdir().unwrap();
    let offset = crate::support::free_port_offset();
    let suffix = format!("t{offset}_{}", std::process::id());

    // This run's databases and users, named apart from any other run's.
    let urls = dir.path().join("database-urls");
    std::fs::create_dir_all(&urls).unwrap();
    let mut made = Made(Vec::new());
    for (key, url) in secrets.get_mut("database-urls").unwrap() {
        let own = format!("{key}_{suffix}");
        let password = url.split(':').nth(2).and_then(|p| p.split('@').next()).unwrap();
        assert_eq!(*url, format!("postgres://{key}:{password}@postgres:5432/{key}"));
        *url = format!("postgres://{own}:{password}@127.0.0.1:5432/{own}");
        std::fs::write(urls.join(key), &*url).unwrap();
        made.0.push(own);
    }
    let init = get(&objects, "ConfigMap", "postgres-init");
    let ran = std::process::Command::new("bash")
        .arg("-c")
        .arg(text(&init["data"]["10-ferrymesh-databases.sh"]))
        .env("DATABASE_URLS_DIR", &urls)
        .env("POSTGRES_USER", "postgres")
        .env("PGHOST", "127.0.0.1")
        .output()
        .expect("run the PostgreSQL init script (psql is installed with PostgreSQL)");
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));

    let certs = dir.path().join("certs");
    let made_certs = crate::support::ferrymesh()
        .args([
            "certs",
            "init",
            certs.to_str().unwrap(),
            "--namespace",
            "ferrymesh",
        ])
        .output()
        .await
        .unwrap();
    assert!(made_certs.status.success());

    // Names and ports as the cluster has them, moved to this run's loopback ports.
    let moves: Vec<(String, String)> = services()
        .iter()
        .flat_map(|(name, port, _)| {
            let (moved, admin) = (port + offset, port + 1000 + offset);
            [
                (format!("0.0.0.0:{port}"), format!("127.0.0.1:{moved}")),
                (format!("0.0.0.0:{}", port + 1000), format!("127.0.0.1:{admin}")),
                (
                    format!("https://{name}:{port}"),
                    format!("https://127.0.0.1:{moved}"),
                ),
            ]
        })
        .chain([(
            "http://jaeger:4317".to_string(),
            format!("http://127.0.0.1:{}", crate::support::port("tracesink", offset)),
        )])
        .collect();
    let moved = |value: &str| {
        moves
            .iter()
            .fold(value.to_string(), |v, (from, to)| v.replace(from, to))
    };

    // The trace sink stands in for Jaeger.
    let mut sink = crate::support::ferrymesh();
    sink.args([
        "serve",
        "tracesink",
        "--listen",
        &format!("127.0.0.1:{}", crate::support::port("tracesink", offset)),
        "--data-dir",
    ])
    .arg(dir.path().join("tracesink"));
    let mut processes = vec![crate::support::Process::spawn(sink)];

    for (name, _, _) in services() {
        let container = &get(&objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
        let upper = name.to_uppercase();
        let mut command = crate::support::ferrymesh();
        command.args(["serve", name]);
        for from in container["envFrom"].as_array().unwrap() {
            let map = get(&objects, "ConfigMap", text(&from["configMapRef"]["name"]));
            for (key, value) in map["data"].as_object().unwrap() {
                command.env(key, moved(text(value)));
            }
        }
        for var in container["env"].as_array().unwrap() {
            let value = match var.get("value") {
                Some(v) => moved(text(v)),
                None => {
                    let reference = &var["valueFrom"]["secretKeyRef"];
                    secrets[text(&reference["name"])][text(&reference["key"])].clone()
                }
            };
            command.env(text(&var["name"]), value);
        }
        // The mounts: its own certificate, a data directory, the gateway's routes.
        command
            .env(
                format!("FERRYMESH_{upper}_TLS_CERT"),
                certs.join(format!("{name}.pem")),
            )
            .env(
                format!("FERRYMESH_{upper}_TLS_KEY"),
                certs.join(format!("{name}.key")),
            )
            .env(format!("FERRYMESH_{upper}_TLS_CA"), certs.join("ca.pem"))
            .env(format!("FERRYMESH_{upper}_DATA_DIR"), dir.path().join(name))
            .env(format!("FERRYMESH_{upper}_LOG_FORMAT"), "human");
        if name == "gateway" {
            let routes = get(&objects, "ConfigMap", "gateway-routes");
            let file = dir.path().join("gateway.toml");
            std::fs::write(&file, moved(text(&routes["data"]["gateway.toml"]))).unwrap();
            command.env("FERRYMESH_GATEWAY_CONFIG", &file);
        }
        let mut process = crate::support::Process::spawn(command);
        process
            .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
            .await;
        processes.push(process);
    }

    // The kubelet's probes, where the Deployments point them.
    for (name, port, _) in services() {
        let probe = if name == "gateway" { port } else { port + 1000 } + offset;
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(crate::support::mesh::channel_as(probe, None));
        let status = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{name}'s probe: {e:?}"))
            .into_inner()
            .status;
        assert_eq!(status, 1, "{name} is SERVING to its probe");
    }

    // A newcomer registers through the gateway and places an order.
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{}", crate::support::port("gateway", offset))
        .parse()
        .unwrap();
    let secret = crate::gateway::register(gateway, "ada@example.com").await;
    let mut orders = opb::orders_service_client::OrdersServiceClient::new(crate::support::mesh::channel_as(
        gateway.port(),
        None,
    ));
    let order = orders
        .place_order(crate::gateway::with_key(
            crate::support::mesh::order_request("kind-1", &[("mug", 1)], crate::support::mesh::GOOD, "GB"),
            &secret,
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = orders
            .get_order(crate::gateway::with_key(
                opb::GetOrderRequest {
                    order_id: order.order_id.clone(),
                },
                &secret,
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        if now.status == opb::OrderStatus::Confirmed as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order is {:?}; workflow says:\n{}",
            now.status,
            processes[6].output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for process in processes.iter_mut().rev() {
        process.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for process in &mut processes {
        process.wait_exit(Duration::from_secs(60)).await;
    }
    drop(made);
}
