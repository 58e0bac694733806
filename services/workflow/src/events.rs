//! The kinds of history event an execution records, named as Step
//! Functions names them. The journal stores the name; everything that
//! writes or reads one goes through [`EventKind`], so a name cannot be
//! misspelled in one place and read in another.

use crate::asl::Kind;

macro_rules! event_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident,)*) => {
        /// A history event's kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[doc = $doc])* $kind,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind,)*];

            /// The name the journal stores.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$kind => stringify!($kind),)*
                }
            }

            /// The kind a stored name stands for.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($kind) => Some(EventKind::$kind),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionTimedOut,
    ExecutionAborted,
    ExecutionRedriven,
    /// Another replica (or this one, restarted) took the execution over.
    ExecutionResumed,
    TaskStateEntered,
    TaskStateExited,
    PassStateEntered,
    PassStateExited,
    ChoiceStateEntered,
    ChoiceStateExited,
    WaitStateEntered,
    WaitStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    FailStateEntered,
    FailStateExited,
    ParallelStateEntered,
    ParallelStateExited,
    MapStateEntered,
    MapStateExited,
    TaskScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    /// A Retry rule matched; the details give the delay.
    TaskRetryScheduled,
    /// A Wait state's wake time, recorded so a restart keeps it.
    WaitStarted,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    MapStateStarted,
    MapStateSucceeded,
    MapStateFailed,
    MapIterationStarted,
    MapIterationSucceeded,
    MapIterationFailed,
}

impl EventKind {
    /// The `…StateEntered` kind of a state type.
    pub fn entered(kind: &Kind) -> Self {
        use EventKind as E;
        match kind {
            Kind::Task(_) => E::TaskStateEntered,
            Kind::Pass { .. } => E::PassStateEntered,
            Kind::Choice { .. } => E::ChoiceStateEntered,
            Kind::Wait(_) => E::WaitStateEntered,
            Kind::Succeed => E::SucceedStateEntered,
            Kind::Fail { .. } => E::FailStateEntered,
            Kind::Parallel(_) => E::ParallelStateEntered,
            Kind::Map(_) => E::MapStateEntered,
        }
    }

    /// The `…StateExited` kind of a state type.
    pub fn exited(kind: &Kind) -> Self {
        use EventKind as E;
        match kind {
            Kind::Task(_) => E::TaskStateExited,
            Kind::Pass { .. } => E::PassStateExited,
            Kind::Choice { .. } => E::ChoiceStateExited,
            Kind::Wait(_) => E::WaitStateExited,
            Kind::Succeed => E::SucceedStateExited,
            Kind::Fail { .. } => E::FailStateExited,
            Kind::Parallel(_) => E::ParallelStateExited,
            Kind::Map(_) => E::MapStateExited,
        }
    }

    /// Whether a state was entered (of any type).
    pub fn is_state_entered(self) -> bool {
        self.as_str().ends_with("StateEntered")
    }

    /// Whether a state was left (of any type).
    pub fn is_state_exited(self) -> bool {
        self.as_str().ends_with("StateExited")
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::parse("TaskStateEnterd"), None);
    }

    #[test]
    fn entered_and_exited_follow_the_state_type() {
        assert_eq!(EventKind::entered(&Kind::Succeed).as_str(), "SucceedStateEntered");
        assert_eq!(EventKind::exited(&Kind::Succeed).as_str(), "SucceedStateExited");
        assert!(EventKind::MapStateEntered.is_state_entered());
        assert!(!EventKind::MapIterationStarted.is_state_entered());
        assert!(EventKind::PassStateExited.is_state_exited());
    }
}
