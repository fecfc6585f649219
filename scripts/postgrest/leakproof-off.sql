-- Undoes leakproof.sql (the plain PostgREST variant).
ALTER FUNCTION jsonb_object_field_text(jsonb, text) NOT LEAKPROOF;
ALTER FUNCTION textout(text) NOT LEAKPROOF;
ALTER FUNCTION numeric_in(cstring, oid, integer) NOT LEAKPROOF;
ALTER FUNCTION numeric_eq(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_ne(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_lt(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_le(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_gt(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_ge(numeric, numeric) NOT LEAKPROOF;
ALTER FUNCTION numeric_cmp(numeric, numeric) NOT LEAKPROOF;
