document.title="batchpilot";
