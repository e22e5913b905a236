 

serveserving_default