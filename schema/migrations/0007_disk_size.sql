-- Each computer's disk quota in GiB, fixed when it is made (from its size, or
-- the operator's COMPUTER_DISK_GB), grown by a resize to a larger size, never
-- shrunk. NULL on computers made before disk quotas: their size's default.
ALTER TABLE computers ADD COLUMN disk_gb INTEGER;
