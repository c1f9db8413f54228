-- Which agent definitions a key may drive (JSON array of names, "*" = all; existing keys get
-- none: grant them with `warden keys update NAME --agents …`), how many agents it may own
-- (NULL = server.max_agents_per_key), and the key's lineage: the id of the first key of its
-- rotation chain, which owns its agents so that a rotation keeps them.
ALTER TABLE virtual_keys ADD COLUMN agents TEXT NOT NULL DEFAULT '[]';
ALTER TABLE virtual_keys ADD COLUMN max_agents BIGINT;
ALTER TABLE virtual_keys ADD COLUMN lineage_id TEXT;
-- Each key's lineage is the root of its rotation chain (a key no other key was replaced by).
WITH RECURSIVE chain(id, root) AS (
    SELECT id, id FROM virtual_keys
        WHERE id NOT IN (SELECT replaced_by FROM virtual_keys WHERE replaced_by IS NOT NULL)
    UNION ALL
    SELECT k.replaced_by, chain.root FROM chain JOIN virtual_keys k ON k.id = chain.id
        WHERE k.replaced_by IS NOT NULL
)
UPDATE virtual_keys SET lineage_id = COALESCE((SELECT root FROM chain WHERE chain.id = virtual_keys.id), id);
-- Agents belong to the lineage of the key that created them.
UPDATE agents SET owner_key_id = COALESCE(
    (SELECT lineage_id FROM virtual_keys WHERE virtual_keys.id = agents.owner_key_id), owner_key_id);
CREATE INDEX agents_by_owner ON agents(owner_key_id);
