-- A read-only role for BI tools on Pynomaly's PostgreSQL warehouse (docs/anomaly_table.md).
--
--   psql "$ADMIN_URL" -v schema=anomalies -v role=bi_reader -f deploy/sql/bi_readonly_role.sql
--
-- schema  the warehouse schema (PYNOMALY_WAREHOUSE_SCHEMA; `public` when that is unset).
--         Case is kept: -v schema=Anomalies is the schema "Anomalies".
-- role    the BI role; created NOLOGIN when missing (give it a password and LOGIN, or grant it
--         to the BI users' own roles).
-- owner   optional: the role Pynomaly loads the warehouse with (the user of
--         PYNOMALY_WAREHOUSE_URL), which creates the views; default: the user running psql.
--
-- Run it as `owner` or a superuser, after the first export (which creates every table and
-- view), and again after upgrading Pynomaly. Running it twice changes nothing.
--
-- The role may SELECT anomaly_scores, anomaly_attributes (entity, passthrough and feature values;
-- columns marked pii are never exported) and the views anomaly_daily_summary, anomaly_top and
-- model_versions_in_use, nothing else: not quarantine (raw input rows, which may hold personal
-- data), not anomaly_feedback (its verdicts are in the views) nor notifications, and it may
-- write nothing. Every export drops and re-creates the views, which would drop a plain GRANT on
-- them: the default privileges below grant SELECT on whatever `owner` creates in the schema from
-- now on, so the re-created views are readable again. The script therefore requires every table
-- to exist already (a table created later would be readable too).

\set ON_ERROR_STOP on
\if :{?schema}
\else
DO $$ BEGIN RAISE EXCEPTION 'bi_readonly_role.sql: name the warehouse schema: psql -v schema=anomalies -v role=bi_reader -f deploy/sql/bi_readonly_role.sql'; END $$;
\endif
\if :{?role}
\else
DO $$ BEGIN RAISE EXCEPTION 'bi_readonly_role.sql: name the BI role: psql -v schema=anomalies -v role=bi_reader -f deploy/sql/bi_readonly_role.sql'; END $$;
\endif
\if :{?owner}
\else
SELECT current_user AS owner \gset
\endif

BEGIN;
-- psql variables are not expanded inside the DO block: hand them over as settings of this transaction
SET LOCAL pynomaly.schema = :'schema';
SET LOCAL pynomaly.role = :'role';

DO $$
DECLARE
    warehouse text := current_setting('pynomaly.schema');
    bi_role text := current_setting('pynomaly.role');
    missing text;
BEGIN
    SELECT string_agg(name, ', ') INTO missing
    FROM unnest(ARRAY['anomaly_scores', 'anomaly_attributes', 'anomaly_feedback', 'quarantine', 'notifications',
                      'anomaly_daily_summary', 'anomaly_top', 'model_versions_in_use']) AS name
    WHERE to_regclass(format('%I.%I', warehouse, name)) IS NULL;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'bi_readonly_role.sql: schema % has no %; run this after the first export to that schema (PYNOMALY_WAREHOUSE_SCHEMA=%)',
            quote_ident(warehouse), missing, warehouse;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = bi_role) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', bi_role);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA :"schema" TO :"role";
-- start from nothing, so that running it again (after an upgrade) removes what no longer belongs
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"role";
GRANT SELECT ON :"schema".anomaly_scores, :"schema".anomaly_attributes,
    :"schema".anomaly_daily_summary, :"schema".anomaly_top, :"schema".model_versions_in_use TO :"role";
-- the views every export re-creates (and views added by later releases)
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"role";
COMMIT;
