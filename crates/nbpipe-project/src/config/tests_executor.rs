//! Tests of `executor:`, where `nbpipe serve` runs the project's runs.

use super::*;

fn executor(body: &str) -> Result<ExecutorConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let text = format!("notebooks: [a.ipynb]\n{body}");
    parse(dir.path(), "nbpipe.yaml", &text).map(|p| p.executor)
}

fn err(body: &str, line: usize, key: &str) -> String {
    let e = executor(body).expect_err(body);
    let shown = e.to_string();
    let inv = e.invalid().unwrap_or_else(|| panic!("{shown}")).clone();
    assert_eq!((inv.line, inv.key.as_str()), (line, key), "{shown}");
    shown
}

#[test]
fn executor_defaults_to_local_and_takes_a_name_or_a_mapping() {
    assert_eq!(executor("").unwrap(), ExecutorConfig::Local);
    assert_eq!(
        executor("executor: local\n").unwrap(),
        ExecutorConfig::Local
    );
    assert_eq!(
        executor("executor: docker\n").unwrap(),
        ExecutorConfig::Docker(DockerConfig::default())
    );
    assert_eq!(
        executor("executor:\n  docker:\n").unwrap(),
        ExecutorConfig::Docker(DockerConfig::default())
    );
    let ExecutorConfig::Docker(d) = executor(
        "executor:\n  docker:\n    cpus: 1.5\n    memory: 64m\n    network: host\n    \
         env: {TZ: UTC, EMPTY: '', N: 3}\n    volumes: [data:/data:ro, /srv/x:/x]\n    \
         stop_grace: 30s\n",
    )
    .unwrap() else {
        panic!("docker")
    };
    assert_eq!(d.cpus, Some(1.5));
    assert_eq!(d.memory, Some(64 * 1024 * 1024));
    assert_eq!(d.network.as_deref(), Some("host"));
    assert_eq!(
        d.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        vec!["EMPTY=", "N=3", "TZ=UTC"]
    );
    assert!(d.volumes[0].host.is_absolute() && d.volumes[0].host.ends_with("data"));
    assert_eq!(
        (d.volumes[0].container.as_str(), d.volumes[0].read_only),
        ("/data", true)
    );
    assert_eq!(d.volumes[1].host, PathBuf::from("/srv/x"));
    assert!(!d.volumes[1].read_only);
    assert_eq!(d.grace(), Duration::from_secs(30));
    assert_eq!(DockerConfig::default().grace(), Duration::from_secs(10));
}

#[test]
fn memory_sizes_read_as_docker_reads_them() {
    assert_eq!(memory_bytes("512"), Some(512));
    assert_eq!(memory_bytes("2k"), Some(2048));
    assert_eq!(memory_bytes("1.5GiB"), Some(3 * 512 * 1024 * 1024));
    assert_eq!(memory_bytes(" 64 MB "), Some(64 * 1024 * 1024));
    for bad in ["", "m", "-1m", "12x", "1e9"] {
        assert_eq!(memory_bytes(bad), None, "{bad}");
    }
}

#[test]
fn bad_executors_are_refused_with_the_key_and_line() {
    let e = err("executor: k8s\n", 2, "executor");
    assert!(e.contains("unknown executor `k8s`"), "{e}");
    let e = err("executor: ecs\n", 2, "executor.ecs");
    assert!(e.contains("needs its settings"), "{e}");
    let e = err("executor: [docker]\n", 2, "executor");
    assert!(e.contains("must be"), "{e}");
    let e = err("executor:\n  docker: {}\n  local: {}\n", 3, "executor");
    assert!(e.contains("names one executor"), "{e}");
    let e = err(
        "executor:\n  docker:\n    memroy: 1g\n",
        4,
        "executor.docker.memroy",
    );
    assert!(e.contains("did you mean `memory`"), "{e}");
    let e = err(
        "executor:\n  docker:\n    memory: 1m\n",
        4,
        "executor.docker.memory",
    );
    assert!(e.contains("at least 6m"), "{e}");
    let e = err(
        "executor:\n  docker:\n    cpus: lots\n",
        4,
        "executor.docker.cpus",
    );
    assert!(e.contains("`lots`"), "{e}");
    let e = err(
        "executor:\n  docker:\n    env:\n      NBPIPE_RUN_ID: x\n",
        5,
        "executor.docker.env.NBPIPE_RUN_ID",
    );
    assert!(e.contains("nbpipe's"), "{e}");
    err(
        "executor:\n  docker:\n    env:\n      1BAD: x\n",
        5,
        "executor.docker.env.1BAD",
    );
    let e = err(
        "executor:\n  docker:\n    volumes: [data:relative]\n",
        4,
        "executor.docker.volumes[0]",
    );
    assert!(e.contains("must be absolute"), "{e}");
    let e = err(
        "executor:\n  docker:\n    volumes: ['a:/b:rx']\n",
        4,
        "executor.docker.volumes[0]",
    );
    assert!(e.contains("unknown mode `rx`"), "{e}");
    err("executor:\n  local: {x: 1}\n", 3, "executor.local.x");
}

#[test]
fn ecs_settings_are_read_and_checked() {
    let ExecutorConfig::Ecs(e) = executor(
        "executor:\n  ecs:\n    cluster: analytics\n    region: eu-west-3\n    \
         capacity_provider_strategy: [{provider: FARGATE_SPOT, weight: 3}, {provider: FARGATE, base: 1}]\n    \
         cpu: 2048\n    memory: 4g\n    subnets: [subnet-1, subnet-2]\n    security_groups: sg-1\n    \
         assign_public_ip: true\n    task_role: arn:aws:iam::123456789012:role/t\n    \
         log_group: /teams/a\n    env: {TZ: UTC}\n    stop_timeout: 60s\n",
    )
    .unwrap() else {
        panic!("ecs")
    };
    assert_eq!(e.cluster, "analytics");
    assert_eq!(e.region.as_deref(), Some("eu-west-3"));
    assert_eq!(e.capacity_provider_strategy.len(), 2);
    assert_eq!(e.capacity_provider_strategy[0].provider, "FARGATE_SPOT");
    assert_eq!(e.capacity_provider_strategy[0].weight, Some(3));
    assert_eq!(e.capacity_provider_strategy[1].base, Some(1));
    assert_eq!((e.cpu, e.memory), (Some(2048), Some(4096)));
    assert_eq!(e.subnets, ["subnet-1", "subnet-2"]);
    assert_eq!(e.security_groups, ["sg-1"]);
    assert!(e.assign_public_ip);
    assert_eq!(e.env["TZ"], "UTC");
    assert_eq!(e.stop_timeout, Some(Duration::from_secs(60)));
    let ExecutorConfig::Ecs(e) =
        executor("executor:\n  ecs: {subnets: [s], memory: 512}\n").unwrap()
    else {
        panic!("ecs")
    };
    assert_eq!((e.cluster.as_str(), e.memory), ("default", Some(512)));

    let e = err(
        "executor:\n  ecs: {cluster: c}\n",
        3,
        "executor.ecs.subnets",
    );
    assert!(e.contains("needs `subnets`"), "{e}");
    let e = err(
        "executor:\n  ecs: {subnets: [s], launch_type: fargate}\n",
        3,
        "executor.ecs.launch_type",
    );
    assert!(e.contains("`FARGATE`"), "{e}");
    err(
        "executor:\n  ecs:\n    subnets: [s]\n    launch_type: FARGATE\n    capacity_provider_strategy: [{provider: FARGATE_SPOT}]\n",
        6,
        "executor.ecs.capacity_provider_strategy",
    );
    err(
        "executor:\n  ecs: {subnets: [s], cpu: 100000}\n",
        3,
        "executor.ecs.cpu",
    );
    err(
        "executor:\n  ecs: {subnets: [s], memory: 64}\n",
        3,
        "executor.ecs.memory",
    );
    err(
        "executor:\n  ecs: {subnets: [s], task_role: admin}\n",
        3,
        "executor.ecs.task_role",
    );
    err(
        "executor:\n  ecs: {subnets: [s], stop_timeout: 10m}\n",
        3,
        "executor.ecs.stop_timeout",
    );
    err(
        "executor:\n  ecs: {subnets: [s], clustr: x}\n",
        3,
        "executor.ecs.clustr",
    );
}
