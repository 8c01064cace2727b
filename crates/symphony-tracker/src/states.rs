//! The workflow's state lists (WORKFLOW.md `tracker.*_states`; design.md, The tracker file).

/// Which state names mean what. Names compare after trim + ASCII lowercase (SPEC §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// States agents work in (default `todo`, `in_progress`).
    pub active: Vec<String>,
    /// Finished states only humans write (default `done`, `cancelled`, `duplicate`).
    pub terminal: Vec<String>,
    /// Waiting for human review (default `review`).
    pub review: Vec<String>,
    /// Parked by a human (default `blocked`).
    pub blocked: Vec<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        let list = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        StateConfig {
            active: list(&["todo", "in_progress"]),
            terminal: list(&["done", "cancelled", "duplicate"]),
            review: list(&["review"]),
            blocked: list(&["blocked"]),
        }
    }
}

fn contains(list: &[String], state: &str) -> bool {
    let state = state.trim();
    list.iter()
        .any(|name| name.trim().eq_ignore_ascii_case(state))
}

impl StateConfig {
    /// Whether agents may work an issue in `state`: active and not terminal (SPEC §8.2).
    pub fn is_active(&self, state: &str) -> bool {
        contains(&self.active, state) && !contains(&self.terminal, state)
    }

    /// Whether `state` is terminal.
    pub fn is_terminal(&self, state: &str) -> bool {
        contains(&self.terminal, state)
    }

    /// Whether `state` is a review state.
    pub fn is_review(&self, state: &str) -> bool {
        contains(&self.review, state)
    }

    /// Whether `state` is a blocked state (parked by a human).
    pub fn is_blocked(&self, state: &str) -> bool {
        contains(&self.blocked, state)
    }

    /// Whether `state` appears in any list.
    pub fn is_known(&self, state: &str) -> bool {
        self.all()
            .any(|name| name.trim().eq_ignore_ascii_case(state.trim()))
    }

    /// Every configured state name, lists in order active, review, blocked, terminal.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.active
            .iter()
            .chain(&self.review)
            .chain(&self.blocked)
            .chain(&self.terminal)
            .map(String::as_str)
    }

    /// The first active state: where new issues start (`todo`).
    pub fn initial(&self) -> &str {
        self.active.first().map_or("todo", String::as_str)
    }

    /// The first active state after the initial one: where a claimed issue goes
    /// (`in_progress`); the initial state when there is only one.
    pub fn working(&self) -> &str {
        self.active
            .get(1)
            .or(self.active.first())
            .map_or("in_progress", String::as_str)
    }

    /// The state a handoff moves an issue to (`review`).
    pub fn handoff(&self) -> &str {
        self.review.first().map_or("review", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_trimmed_and_case_insensitive() {
        let states = StateConfig::default();
        assert!(states.is_active(" Todo "));
        assert!(states.is_terminal("DONE"));
        assert!(!states.is_active("review"));
        assert!(states.is_known("Blocked"));
        assert!(!states.is_known("wontfix"));
    }

    #[test]
    fn a_state_in_both_active_and_terminal_is_not_active() {
        let states = StateConfig {
            active: vec!["todo".into(), "done".into()],
            ..StateConfig::default()
        };
        assert!(!states.is_active("done"));
    }

    #[test]
    fn workflow_transitions_follow_the_lists() {
        let states = StateConfig::default();
        assert_eq!(
            (states.initial(), states.working(), states.handoff()),
            ("todo", "in_progress", "review")
        );
    }
}
