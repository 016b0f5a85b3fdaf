-- Drops every memory and link: only for development databases.
DROP TABLE IF EXISTS memory_links;
DROP TABLE IF EXISTS memory_items;
