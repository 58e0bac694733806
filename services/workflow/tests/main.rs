//! The workflow service alone, over a real port and a real database, with
//! its tasks answered by a scripted invoker: every scenario runs once on
//! SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::Workflow::start;
    bad_definitions_are_refused_naming_the_state_and_the_problem,
    versions_are_immutable_and_executions_stay_pinned,
    the_language_computes_what_step_functions_would,
    retry_and_catch_follow_the_error_names,
    start_is_idempotent_by_name_even_when_raced,
    a_stopped_execution_ends_aborted,
    history_and_lists_page,
    a_bad_journal_write_does_not_hold_back_the_others,
    a_replica_that_lost_the_lease_records_nothing_and_the_execution_goes_on,
    replicas_starting_together_migrate_one_database_once,
    an_execution_that_failed_where_nothing_planned_it_needs_an_operator,
    executions_are_grouped_and_found_by_name_error_and_state,
    an_execution_committed_but_never_launched_here_is_taken_up,
);
