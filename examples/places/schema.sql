-- "Nearest places": the example's own small schema (examples/places/app.py creates it).
DROP TABLE IF EXISTS visits;
DROP TABLE IF EXISTS places;
DROP TYPE IF EXISTS place_kind;
CREATE TYPE place_kind AS ENUM ('cafe', 'park', 'museum', 'library');
CREATE TABLE places (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    kind place_kind NOT NULL,
    lat double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    tags text[] NOT NULL DEFAULT '{}',
    opened_on date
);
COMMENT ON TABLE places IS 'Points of interest with WGS84 coordinates.';
CREATE TABLE visits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    place_id integer NOT NULL REFERENCES places (id) ON DELETE CASCADE,
    visitor text NOT NULL,
    visited_at timestamptz NOT NULL DEFAULT now()
);
