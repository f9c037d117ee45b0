-- The plaintext size of each env value (bytes), so that the limit on a
-- computer's whole environment is checked in the same statement that stores a
-- variable. Rows from before are sized from their ciphertext: base64 of the
-- value plus AES-GCM's 16-byte tag.
ALTER TABLE computer_env ADD COLUMN value_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE computer_env SET value_bytes = MAX(0,
  LENGTH(ciphertext) * 3 / 4
  - (CASE WHEN ciphertext LIKE '%==' THEN 2 WHEN ciphertext LIKE '%=' THEN 1 ELSE 0 END)
  - 16);

-- Why a computer is in its status when that needs saying (a boot that failed,
-- a disk the host lost); NULL otherwise. Shown on GET computer.
ALTER TABLE computers ADD COLUMN status_reason TEXT;
