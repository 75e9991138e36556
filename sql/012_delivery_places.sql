-- Where parcels to each region are delivered (schemas/health.py Conditions.places, R5).
--
-- A leg tells where its parcel was delivered when its delivery scan told an area
-- (delivered_lat, delivered_lon; NULL otherwise, and for legs written before).
-- The job keeps, per region, the place of its newest such leg: the end of an
-- order's way, which the traffic_on_way health factor measures incidents against.
ALTER TABLE eta_legs
    ADD COLUMN IF NOT EXISTS delivered_lat Nullable(Float64),
    ADD COLUMN IF NOT EXISTS delivered_lon Nullable(Float64);

-- Per region, where its newest leg that told one was delivered: as the job learns it
-- (up to the job's rule of keeping a place until one 5 km away replaces it).
CREATE OR REPLACE VIEW delivery_places AS
SELECT
    region_code,
    argMax(delivered_lat, delivered_at) AS lat,
    argMax(delivered_lon, delivered_at) AS lon,
    max(delivered_at) AS newest_delivery,
    count() AS legs
FROM eta_legs FINAL
WHERE delivered_lat IS NOT NULL
GROUP BY region_code;
