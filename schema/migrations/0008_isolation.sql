-- Computers as microVMs: which driver makes a computer (its isolation), and
-- how a host's VMs run (the accelerator its agent probed at start, NULL when
-- the host offers no VMs).
ALTER TABLE computers ADD COLUMN isolation TEXT NOT NULL DEFAULT 'sandbox' CHECK (isolation IN ('sandbox', 'vm'));
ALTER TABLE hosts ADD COLUMN vm_accel TEXT CHECK (vm_accel IN ('kvm', 'tcg'));
-- A VM stopped with keep_memory: its host keeps its memory, and the next start resumes it.
ALTER TABLE computers ADD COLUMN memory_kept INTEGER NOT NULL DEFAULT 0;
