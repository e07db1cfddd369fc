//! Taskcluster scope satisfaction (taskcluster-lib-scopes `patternMatch`).
//!
//! A held scope satisfies a required one if they are equal, or if the held
//! scope ends in `*` and the required scope starts with the held scope minus
//! that single trailing `*`. Stars anywhere else, and on the *required* side,
//! are ordinary characters. Roles (`assume:`) are not expanded here: the
//! scopes a [`super::Caller`] holds are already expanded (Taskcluster) or
//! configured verbatim (local).

/// Whether `held` satisfies the single scope `required`.
pub fn satisfies(held: &[String], required: &str) -> bool {
    held.iter().any(|h| pattern_match(h, required))
}

/// Whether `held` satisfies every scope in `required` (`{AllOf: required}`);
/// an empty `required` is satisfied by anything, as in Taskcluster.
pub fn satisfies_all(held: &[String], required: &[String]) -> bool {
    required.iter().all(|r| satisfies(held, r))
}

/// Whether `scope` is a valid Taskcluster scope: printable ASCII only
/// (`^[\x20-\x7e]*$`, taskcluster-lib-scopes `validScope`). The empty string is valid.
pub fn is_valid_scope(scope: &str) -> bool {
    scope.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn pattern_match(pattern: &str, scope: &str) -> bool {
    if pattern == scope {
        return true;
    }
    // Only the one trailing star is stripped: `foo:**` is the prefix `foo:*`,
    // which matches `foo:*123` but not `foo:abc` (the "double-star" rule).
    match pattern.strip_suffix('*') {
        Some(prefix) => scope.starts_with(prefix),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// The DNF form of taskcluster.md §4.3 (`scopeMatch`): any inner list fully satisfied.
    fn scope_match(held: &[&str], sets: &[&[&str]]) -> bool {
        let held = v(held);
        sets.iter().any(|set| satisfies_all(&held, &v(set)))
    }

    #[test]
    fn double_star_rule() {
        let held = v(&["foo:**"]);
        assert!(satisfies(&held, "foo:*"));
        assert!(satisfies(&held, "foo:*123"));
        assert!(satisfies(&held, "foo:**"));
        assert!(!satisfies(&held, "foo:abc"));
        assert!(!satisfies(&held, "foo:"));
    }

    #[test]
    fn star_only_counts_on_the_held_side() {
        assert!(!satisfies(&v(&["scopeC:xyz"]), "scopeC:*"));
        assert!(satisfies(&v(&["*"]), ""));
        assert!(satisfies(&v(&["*"]), "anything:at:all"));
    }

    #[test]
    fn legacy_scope_match_vectors() {
        // Every row of taskcluster.md §4.3.
        type Case<'a> = (&'a [&'a str], &'a [&'a [&'a str]], bool);
        let cases: &[Case] = &[
            (&["foo:bar"], &[&["foo:bar"]], true),
            (&["foo:bar"], &[&[""]], false),
            (&["foo:*"], &[&["foo:bar"]], true),
            (&["foo:*:bing"], &[&["foo:bar:bing"]], false),
            (&["*:bar"], &[&["foo:bar"]], false),
            (&["foo:"], &[&["foo:bar"]], false),
            (&["bar:*"], &[&["foo:bar:bing"]], false),
            (&["bar:*"], &[&["foo:x"], &["bar:x"]], true),
            (&["bar:*", "foo:x"], &[&["foo:x", "bar:y"]], true),
            (&[""], &[&["foo:bar"]], false),
            (&[], &[&["foo:bar"]], false),
            (&["*"], &[&["foo:bar", "bar:bing"]], true),
            (&["foo:bar"], &[&[]], true),
            (&["foo:bar"], &[], false),
            (&["project:releng:roller:*"], &[&["project:releng:roller:reboot"]], true),
            (&["project:releng:roller:reboo"], &[&["project:releng:roller:reboot"]], false),
        ];
        for (held, sets, want) in cases {
            assert_eq!(scope_match(held, sets), *want, "{held:?} vs {sets:?}");
        }
    }

    /// A tiny evaluator for the §4.2 expression vectors, built only on the
    /// public functions, so those vectors exercise the same star rule.
    enum Expr {
        S(&'static str),
        All(Vec<Expr>),
        Any(Vec<Expr>),
    }
    use Expr::{All, Any, S};

    fn eval(held: &[String], e: &Expr) -> bool {
        match e {
            S(s) => satisfies(held, s),
            All(es) => es.iter().all(|e| eval(held, e)),
            Any(es) => es.iter().any(|e| eval(held, e)),
        }
    }

    #[test]
    fn expression_vectors() {
        let cases: Vec<(&[&str], Expr, bool)> = vec![
            (&[], Any(vec![]), false),
            (&[], S("missing-scope"), false),
            (&["ghi*"], Any(vec![S("abc"), S("def")]), false),
            (&["abc*"], All(vec![S("abc"), S("ghi")]), false),
            (&[""], Any(vec![S("abc"), S("def")]), false),
            (&["abc:def"], Any(vec![S("abc"), S("def")]), false),
            (&["xyz", "abc"], All(vec![Any(vec![All(vec![S("foo")]), All(vec![S("bar")])])]), false),
            (&["a*", "b*", "c*"], All(vec![S("bx"), S("cx"), Any(vec![S("xxx"), S("yyyy")])]), false),
            (&[], All(vec![]), true),
            (&["A", "B"], S("A"), true),
            (&["a*", "b*", "c*"], S("abc"), true),
            (&["abc*"], Any(vec![S("abc"), S("def")]), true),
            (&["foo"], All(vec![Any(vec![All(vec![S("foo")]), All(vec![S("bar")])])]), true),
            (&["a*", "b*", "c*"], Any(vec![All(vec![S("ax"), S("jx")]), All(vec![S("bx"), S("cx")]), S("bbb")]), true),
        ];
        for (held, e, want) in &cases {
            assert_eq!(eval(&v(held), e), *want, "{held:?}");
        }
    }

    #[test]
    fn satisfies_all_of_nothing_is_true() {
        assert!(satisfies_all(&[], &[]));
        assert!(!satisfies_all(&[], &v(&["a"])));
    }

    #[test]
    fn validity() {
        assert!(is_valid_scope(""));
        assert!(is_valid_scope("project:releng:roller:* ~"));
        assert!(!is_valid_scope("tab\there"));
        assert!(!is_valid_scope("nl\n"));
        assert!(!is_valid_scope("caf\u{e9}"));
        assert!(!is_valid_scope("\x7f"));
    }

    /// Properties of the star rule over arbitrary scopes (taskcluster.md §4.1, §4.3).
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Few letters, colons and stars, so that prefixes and equal scopes are common.
        fn scope() -> impl Strategy<Value = String> {
            prop_oneof![3 => "[ab:*]{0,6}", 1 => "[ -~]{0,12}"]
        }

        fn scopes() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec(scope(), 0..5)
        }

        /// A scope whose only star, if any, is its last character. Taskcluster's rule makes
        /// `**` satisfy the scope `*` (it starts with `*`) but not what `*` satisfies, so
        /// chains of grants hold only for scopes written this way (as every real one is).
        fn trailing_star_scope() -> impl Strategy<Value = String> {
            prop_oneof![3 => "[ab:]{0,5}\\*?", 1 => "[ -)+-~]{0,11}\\*?"]
        }

        /// `scopeMatch`'s disjunctive normal form: any one inner set fully satisfied.
        fn scopeset_match(held: &[String], sets: &[Vec<String>]) -> bool {
            sets.iter().any(|set| satisfies_all(held, set))
        }

        proptest! {
            #[test]
            fn a_scope_satisfies_itself(s in scope()) {
                prop_assert!(satisfies(std::slice::from_ref(&s), &s));
            }

            #[test]
            fn a_star_satisfies_every_extension(prefix in scope(), ext in scope()) {
                let (held, required) = (format!("{prefix}*"), format!("{prefix}{ext}"));
                prop_assert!(satisfies(&[held], &required));
            }

            #[test]
            fn a_scope_without_a_trailing_star_satisfies_only_itself(held in scope(), required in scope()) {
                prop_assume!(!held.ends_with('*'));
                prop_assert_eq!(satisfies(std::slice::from_ref(&held), &required), held == required);
            }

            #[test]
            fn a_star_satisfies_exactly_what_starts_with_its_prefix(prefix in scope(), required in scope()) {
                let held = format!("{prefix}*");
                prop_assert_eq!(
                    satisfies(std::slice::from_ref(&held), &required),
                    required == held || required.starts_with(&prefix)
                );
            }

            #[test]
            fn the_lone_star_satisfies_everything(required in scopes()) {
                prop_assert!(satisfies_all(&["*".to_string()], &required));
            }

            #[test]
            fn adding_scopes_never_removes_satisfaction(
                held in scopes(),
                extra in scopes(),
                sets in prop::collection::vec(scopes(), 0..4),
            ) {
                let more: Vec<String> = held.iter().chain(&extra).cloned().collect();
                for r in sets.iter().flatten() {
                    prop_assert!(!satisfies(&held, r) || satisfies(&more, r));
                }
                prop_assert!(!scopeset_match(&held, &sets) || scopeset_match(&more, &sets));
            }

            #[test]
            fn scopesets_are_an_or_of_ands(held in scopes(), sets in prop::collection::vec(scopes(), 0..4), r in scope()) {
                // Another alternative can only help; another requirement in every
                // alternative can only hurt.
                let mut wider = sets.clone();
                wider.push(vec![r.clone()]);
                prop_assert!(!scopeset_match(&held, &sets) || scopeset_match(&held, &wider));
                let stricter: Vec<Vec<String>> =
                    sets.iter().map(|s| s.iter().cloned().chain([r.clone()]).collect()).collect();
                prop_assert!(!scopeset_match(&held, &stricter) || scopeset_match(&held, &sets));
                prop_assert!(scopeset_match(&held, &[vec![]]));
                prop_assert!(!scopeset_match(&held, &[]));
            }

            #[test]
            fn satisfaction_is_transitive(a in trailing_star_scope(), b in trailing_star_scope(), c in scope()) {
                // What a granted scope grants in turn, the granting scope already grants:
                // narrowing (authorizedScopes, certificates) can never widen.
                if satisfies(std::slice::from_ref(&a), &b) && satisfies(&[b], &c) {
                    prop_assert!(satisfies(&[a], &c));
                }
            }

            #[test]
            fn validity_is_printable_ascii(s in any::<String>()) {
                prop_assert_eq!(is_valid_scope(&s), s.chars().all(|c| (' '..='~').contains(&c)));
            }
        }
    }
}
