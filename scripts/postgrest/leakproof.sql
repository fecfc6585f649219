-- The "LEAKPROOF" PostgREST variant: a superuser marks the functions behind `->>`, the
-- text -> numeric cast (an I/O conversion: textout + numeric_in) and the numeric
-- comparisons LEAKPROOF, so that PostgreSQL may evaluate JSON filters before the RLS
-- policy and use the expression indexes. Built-in functions are per database: run it
-- only in the PostgREST benchmark database. `leakproof-off.sql` undoes it.
ALTER FUNCTION jsonb_object_field_text(jsonb, text) LEAKPROOF;
ALTER FUNCTION textout(text) LEAKPROOF;
ALTER FUNCTION numeric_in(cstring, oid, integer) LEAKPROOF;
ALTER FUNCTION numeric_eq(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_ne(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_lt(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_le(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_gt(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_ge(numeric, numeric) LEAKPROOF;
ALTER FUNCTION numeric_cmp(numeric, numeric) LEAKPROOF;
