//! House rules the compiler does not check, checked on the source (in the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`): the imports follow the data path
//! (API → auth → queue → runner → action → driver → hardware) with no circles
//! between top-level modules, only drivers spawn processes, and no source file
//! grows past what one reader holds. ARCHITECTURE.md's picture is what these allow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules that must never import each other in this direction, and why.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "drivers",
        &["actions", "queue", "config", "api", "auth", "runner", "startup", "cli"],
        "drivers own protocols and know nothing of jobs, configuration or HTTP",
    ),
    ("queue", &["actions", "config", "api", "runner", "drivers"], "the queue stores jobs; it runs nothing"),
    ("auth", &["config", "actions", "drivers", "queue", "runner"], "auth verifies requests and holds no clients"),
    ("api", &["drivers", "runner"], "handlers never drive hardware; they enqueue"),
    ("actions", &["api", "queue", "config", "runner", "startup", "cli", "auth"], "actions never see HTTP or the queue"),
    ("task", &["*"], "the task record is a leaf every layer may name"),
    (
        "health",
        &["api", "runner", "startup", "cli", "config", "auth"],
        "the sweep and the medic observe and enqueue like any client; they serve no HTTP and run no jobs",
    ),
    (
        "medic",
        &["api", "runner", "startup", "cli", "config", "auth", "actions", "drivers"],
        "the medic reads health and enqueues jobs like any client; it never drives hardware or serves HTTP",
    ),
    (
        "paths",
        &["api", "runner", "startup", "cli", "config", "auth", "medic", "health"],
        "path checks read through drivers and write records; they serve no HTTP, run no jobs, judge no health",
    ),
    (
        "breaker",
        &["api", "runner", "startup", "cli", "config", "actions", "drivers", "health", "medic"],
        "the breaker is a rule over job history",
    ),
    ("domain", &["*"], "domain types are leaves"),
    ("config", &["startup", "runner", "api", "queue", "cli"], "settings are data, read by the layers that use them"),
];

/// Non-test lines a source file may have.
const MAX_LINES: usize = 600;

struct Source {
    path: PathBuf,
    /// The top-level module the file belongs to (`actions` for `src/actions/ipmi.rs`).
    module: String,
    /// The text without comments, with test-only code cut off.
    code: String,
    /// The whole file is compiled only for tests (`#[cfg(test)] mod x;`).
    test_only: bool,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let test_only = test_only_files(&files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            Source { test_only: test_only.contains(&path), code: non_test_code(&text), module, path }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files declared as `#[cfg(test)] mod name;` (the queue's conformance suite, say).
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let dir = match f.file_name().unwrap().to_str().unwrap() {
            "mod.rs" | "lib.rs" | "main.rs" => f.parent().unwrap().to_path_buf(),
            name => f.parent().unwrap().join(name.trim_end_matches(".rs")),
        };
        let mut test_attr = false;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';'))
                && test_attr
            {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
            test_attr = line == "#[cfg(test)]";
        }
    }
    out
}

/// The code a reader of the module reads: comments removed, and everything from
/// the `#[cfg(test)]` test module on cut (it is the last item by house style).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let code = match line.find("//") {
            // A `//` inside a string ("http://…") is not a comment; good enough for imports.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Top-level modules `code` names through `crate::` (plain and grouped imports, paths).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `roller_crate::` or `$crate::` are not ours.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                refs.insert(ident(item.trim()));
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && r != "self");
    refs
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// module → the modules it imports (test code excluded), with one file for each edge.
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for s in sources.iter().filter(|s| !s.test_only) {
        let edges = g.entry(s.module.clone()).or_default();
        for r in crate_refs(&s.code) {
            if r != s.module && !["lib", "main"].contains(&s.module.as_str()) {
                edges.entry(r).or_insert_with(|| s.path.clone());
            }
        }
    }
    g
}

#[test]
fn imports_follow_the_data_path() {
    let sources = sources();
    let g = graph(&sources);
    let mut problems = Vec::new();
    for (from, banned, why) in FORBIDDEN {
        for (to, file) in g.get(*from).into_iter().flatten() {
            if banned.contains(&"*") || banned.contains(&to.as_str()) {
                problems.push(format!("{from} → {to} ({}): {why}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "forbidden imports:\n{}", problems.join("\n"));
}

#[test]
fn top_level_modules_import_each_other_in_one_direction_only() {
    let g = graph(&sources());
    // Depth-first search for a cycle; report the first one with the files behind each edge.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeMap<String, PathBuf>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut cycle: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for next in g.get(n).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(cycle) = visit(n, &g, &mut Vec::new(), &mut done) {
            let edges: Vec<String> =
                cycle.windows(2).map(|w| format!("{} → {} ({})", w[0], w[1], g[&w[0]][&w[1]].display())).collect();
            panic!("import circle {}:\n{}", cycle.join(" → "), edges.join("\n"));
        }
    }
}

#[test]
fn only_drivers_spawn_processes() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !s.test_only && s.module != "drivers" && s.code.contains("Command::new"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "Command::new outside src/drivers (spawn through a driver): {offenders:?}");
}

#[test]
fn no_source_file_outgrows_one_reader() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| !s.test_only)
        .map(|s| (s.code.lines().count(), s))
        .filter(|(n, _)| *n > MAX_LINES)
        .map(|(n, s)| format!("{} ({n} lines)", s.path.display()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines of non-test code; split along its seams: {long:?}");
}

/// Tasks by the action module `actions::dispatch` routes them to (`Task::IpmiReset`
/// → `ipmi`), read from its match: each arm's `Task::X | …` before `=>`, its module
/// after `Box::pin(`.
fn dispatch_routes(mod_rs: &str) -> BTreeMap<String, Vec<String>> {
    let start = mod_rs.find("pub fn dispatch").expect("actions::dispatch");
    let body = &mod_rs[start..];
    let body = &body[..body.find("if task.cuts_power()").expect("the dispatch's evidence hook")];
    let arms: Vec<&str> = body.split("=>").collect();
    let mut routes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, before) in arms.iter().enumerate().take(arms.len() - 1) {
        // The tasks of this arm come after the previous arm's call.
        let own = before.rfind("Box::pin").map_or(*before, |j| &before[j..]);
        let tasks: Vec<String> =
            own.split("Task::").skip(1).map(|t| t.chars().take_while(|c| c.is_alphanumeric()).collect()).collect();
        let after = arms[i + 1];
        let Some(call) = after.find("Box::pin(").map(|j| &after[j + "Box::pin(".len()..]) else { continue };
        let module: String = call.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if call[module.len()..].starts_with("::") {
            routes.entry(module).or_default().extend(tasks);
        }
    }
    routes
}

/// Every action that cuts power (`PowerChange::Cut`, or arming a restore before a cut)
/// serves a task that declares it (`TaskSpec::cuts_power`), and every task that declares
/// it is served by such an action: the dispatch takes the evidence before the declared
/// ones, and `ActionContext::touch` refuses an undeclared cut when it happens.
#[test]
fn every_action_that_cuts_power_serves_tasks_that_declare_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actions");
    let routes = dispatch_routes(&std::fs::read_to_string(src.join("mod.rs")).unwrap());
    assert!(routes.get("ipmi").is_some_and(|t| t.contains(&"IpmiReset".to_string())), "{routes:?}");
    let declared = |variant: &str| {
        roller::task::Task::ALL.iter().find(|t| format!("{t:?}") == variant).is_some_and(|t| t.cuts_power())
    };
    let mut problems = Vec::new();
    for (module, tasks) in &routes {
        let code = non_test_code(&std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap());
        let cuts = code.contains("PowerChange::Cut") || code.contains(".arm(");
        let declaring: Vec<&String> = tasks.iter().filter(|t| declared(t)).collect();
        if cuts && declaring.is_empty() {
            problems.push(format!("actions/{module}.rs cuts power, but none of {tasks:?} declares cuts_power"));
        }
        if !cuts && !declaring.is_empty() {
            problems.push(format!("{declaring:?} declare cuts_power, but actions/{module}.rs never cuts"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let cutting: usize = routes.values().flatten().filter(|t| declared(t)).count();
    assert_eq!(cutting, roller::task::Task::ALL.iter().filter(|t| t.cuts_power()).count(), "{routes:?}");
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let refs = crate_refs("use crate::{actions::{self, Task}, queue};\nlet x = crate::drivers::gate::Gates::new();");
    assert_eq!(refs, ["actions", "drivers", "queue"].into_iter().map(String::from).collect());
    assert!(crate_refs("use roller_crate::x; $crate::y").is_empty());
    assert_eq!(
        non_test_code("a // crate::x\n\"http://\" crate::y\n#[cfg(test)]\ncrate::z"),
        "a \n\"http://\" crate::y\n"
    );
}
