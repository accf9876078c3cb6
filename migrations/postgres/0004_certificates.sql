-- D5: certificate numbers PREFIX-YEAR-NNNNNN, counted per prefix and year. The counter row
-- is updated in the transaction that issues the certificate, so a rolled-back issue leaves
-- no gap, and concurrent issuers wait for each other on the row instead of colliding.
CREATE TABLE certificate_sequences (
    prefix TEXT NOT NULL,
    year   BIGINT NOT NULL,
    last   BIGINT NOT NULL,
    PRIMARY KEY (prefix, year)
);
