DROP TABLE inbound_contacts;
