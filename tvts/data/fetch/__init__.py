"""From the YT-Temporal release to a corpus: ids (`ids`), downloads through yt-dlp (`download`),
the availability snapshot (`availability`) and the join into the YT-Temporal layout (`join`)."""
