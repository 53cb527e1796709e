<#
.SYNOPSIS
    Follow a run of the quantization evaluation workflow with a progress bar.

.DESCRIPTION
    Every -UpdateInterval seconds the script asks `quant-eval progress --json` for the
    state of the run, which that command reads from the run's Snakemake log, and draws it
    with Write-Progress: the pipeline's name, the percentage of jobs done, the current
    phase and job, CPU use, memory in use and the estimated time remaining. It stops when
    the run finishes (exit code 0) or fails (exit code 1), and says which.
    Runs on Windows PowerShell 5.1 and PowerShell 7.

.PARAMETER PipelineId
    The id the workflow logs at start ("Pipeline id: ..."), or "latest" for the newest run.

.PARAMETER UpdateInterval
    Seconds between refreshes.

.PARAMETER Directory
    Working directory of the run: the folder that holds .snakemake (default: the current folder).

.PARAMETER QuantEval
    The quant-eval command to call (default: quant-eval on the PATH).

.EXAMPLE
    scripts/monitor_quantization_progress.ps1 -PipelineId latest -UpdateInterval 5
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$PipelineId,

    [ValidateRange(1, 3600)]
    [int]$UpdateInterval = 2,

    [string]$Directory = (Get-Location).Path,

    [string]$QuantEval = "quant-eval"
)

function Format-Duration {
    param([object]$Seconds)
    if ($null -eq $Seconds) {
        return "unknown"
    }
    $span = [TimeSpan]::FromSeconds([math]::Round([double]$Seconds))
    $hours = [int][math]::Floor($span.TotalHours)
    return "{0}:{1:D2}:{2:D2}" -f $hours, $span.Minutes, $span.Seconds
}

function Get-Snapshot {
    param([string]$Id)
    # Only standard output is captured: in Windows PowerShell 5.1, redirecting a native
    # command's standard error turns each of its lines into an error record.
    $lines = & $QuantEval progress --json --pipeline-id $Id --directory $Directory
    if ($LASTEXITCODE -ne 0) {
        Write-Error "quant-eval progress failed (exit code $LASTEXITCODE) for pipeline id '$Id' in $Directory"
        exit 2
    }
    return ($lines -join "`n") | ConvertFrom-Json
}

$snapshot = Get-Snapshot -Id $PipelineId
# Follow this run from now on, even when 'latest' would later name a newer one.
$id = $snapshot.pipeline_id
$activity = "$($snapshot.name) [$id]"

while ($true) {
    $phase = $snapshot.phase
    if ($null -eq $phase) {
        $phase = "starting"
    }
    $job = $snapshot.current_job
    if ($null -eq $job) {
        $job = "waiting for a job"
    }
    $status = "{0:N1}% done ({1} of {2} jobs), phase: {3}" -f $snapshot.percent, $snapshot.done_jobs, $snapshot.total_jobs, $phase
    $memory = "{0:N1} / {1:N1} GiB" -f ($snapshot.memory_used_bytes / 1GB), ($snapshot.memory_total_bytes / 1GB)
    $eta = Format-Duration -Seconds $snapshot.eta_seconds
    if ($null -ne $snapshot.eta_seconds -and -not $snapshot.eta_complete) {
        $eta = "$eta (rough)"
    }
    $cpu = "{0:N0}%" -f $snapshot.cpu_percent
    $operation = "job: $job | CPU: $cpu | memory: $memory | time left: $eta"
    $percent = [int][math]::Min(100, [math]::Max(0, [math]::Floor([double]$snapshot.percent)))

    if ($null -ne $snapshot.eta_seconds) {
        Write-Progress -Activity $activity -Status $status -CurrentOperation $operation `
            -PercentComplete $percent -SecondsRemaining ([int]$snapshot.eta_seconds)
    }
    else {
        Write-Progress -Activity $activity -Status $status -CurrentOperation $operation -PercentComplete $percent
    }

    if ($snapshot.state -ne "running") {
        break
    }
    Start-Sleep -Seconds $UpdateInterval
    $snapshot = Get-Snapshot -Id $id
}

Write-Progress -Activity $activity -Completed
if ($snapshot.state -eq "finished") {
    Write-Host "Pipeline $id finished: $($snapshot.message)" -ForegroundColor Green
    exit 0
}
Write-Host "Pipeline $id failed: $($snapshot.message)" -ForegroundColor Red
foreach ($failed in $snapshot.failed) {
    Write-Host "  $($failed.rule) ($($failed.wildcards)): see $($failed.log)" -ForegroundColor Red
}
Write-Host "Snakemake log: $($snapshot.log)"
exit 1
