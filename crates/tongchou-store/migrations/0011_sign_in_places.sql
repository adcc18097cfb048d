-- A sign-in attempt takes its place in `sign_in_failures` before the password is verified
-- (verified = 0) and counts as a failure until it proves right; wrong ones are marked
-- verified. Rows from before this migration were all verified failures.
ALTER TABLE sign_in_failures ADD COLUMN verified INTEGER NOT NULL DEFAULT 1;
