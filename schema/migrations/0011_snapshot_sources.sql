-- What a snapshot was taken of, so it can be restored into a new computer
-- after its own computer is deleted (a kept snapshot): the source computer's
-- name, template, size and apps, as JSON.
ALTER TABLE snapshots ADD COLUMN source TEXT NOT NULL DEFAULT '{}';
