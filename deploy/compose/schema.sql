CREATE ROLE doctor LOGIN PASSWORD 'doctor';
CREATE ROLE billing LOGIN PASSWORD 'billing';
CREATE TABLE public.patients (
  id        serial PRIMARY KEY,
  name      text NOT NULL,
  ssn       bytea,
  diagnosis bytea
);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.patients TO doctor;
GRANT USAGE ON SEQUENCE public.patients_id_seq TO doctor;
GRANT SELECT ON public.patients TO billing;
