-- Moving a stopped computer to another host: while its disk is copied, the
-- target host may open a computer socket to it too. NULL when no move is under way.
ALTER TABLE computers ADD COLUMN moving_to_host_id TEXT REFERENCES hosts(id);
