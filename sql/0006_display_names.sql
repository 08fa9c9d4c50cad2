-- 0006_display_names.sql - a name an account chooses to show on the
-- public donors' leaderboard (GET /leaderboard, the network page).  Opt-in:
-- '' (the default) shows the account by its public id only.  Set and
-- cleared by the account itself (POST /accounts/name).  Same dialect rules
-- as 0001.
ALTER TABLE accounts ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
