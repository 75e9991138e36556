-- Which destination regions have orders at risk right now, and which orders?
-- Open orders whose health is red or yellow, per region, worst first, with up to
-- three of its lowest-scored orders and their first reason.
-- Parameters: none.
SELECT region_code, red, yellow, worst
FROM at_risk_by_region;
