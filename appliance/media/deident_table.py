"""Our action table for the Basic Application Level Confidentiality Profile (PS3.15 Annex E).

Written from the facts of Table E.1-1 (attribute -> action of the Basic Profile, and which options
keep it), grouped by what the attribute is about. UIDs are not listed: every UI attribute is
replaced by rule (see deidentify.py), which covers the table's "U" rows and any UID the table does
not name. Private groups, curves (50xx), overlays (60xx) and command elements (0000) are removed
by group, also in deidentify.py.

A few rows go beyond the table; they are marked "ours" with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydicom.datadict import tag_for_keyword


class Action(StrEnum):
    """Action codes of PS3.15 E.1.1; combined codes are resolved against the data set."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    ZERO_OR_DUMMY = "Z/D"
    REMOVE_OR_ZERO = "X/Z"
    REMOVE_OR_DUMMY = "X/D"
    REMOVE_ZERO_OR_DUMMY = "X/Z/D"
    REMOVE_ZERO_OR_UIDS = "X/Z/U*"


D = Action.DUMMY
Z = Action.ZERO
X = Action.REMOVE
ZD = Action.ZERO_OR_DUMMY
XZ = Action.REMOVE_OR_ZERO
XD = Action.REMOVE_OR_DUMMY
XZD = Action.REMOVE_ZERO_OR_DUMMY
XZU = Action.REMOVE_ZERO_OR_UIDS

_PATIENT: dict[str, Action] = {
    "PatientName": Z,
    "PatientID": Z,
    "IssuerOfPatientID": X,
    "IssuerOfPatientIDQualifiersSequence": X,  # ours: names the issuing organisation
    "OtherPatientIDs": X,
    "OtherPatientIDsSequence": X,
    "OtherPatientNames": X,
    "PatientBirthDate": Z,
    "PatientBirthTime": X,
    "PatientBirthName": X,
    "PatientMotherBirthName": X,
    "PatientBirthDateInAlternativeCalendar": X,  # ours: a birth date in another calendar
    "PatientDeathDateInAlternativeCalendar": X,  # ours: same reason
    "PatientAlternativeCalendar": X,  # ours: only meaningful with the two above
    "PatientSex": Z,
    "PatientSexNeutered": XZ,
    "PatientAge": X,
    "PatientSize": X,
    "PatientWeight": X,
    "EthnicGroup": X,
    "PregnancyStatus": X,
    "SmokingStatus": X,
    "LastMenstrualDate": X,
    "PatientAddress": X,
    "PatientTelephoneNumbers": X,
    "PatientTelecomInformation": X,
    "CountryOfResidence": X,
    "RegionOfResidence": X,
    "PatientReligiousPreference": X,
    "PatientPrimaryLanguageCodeSequence": X,
    "PatientPrimaryLanguageModifierCodeSequence": X,
    "Occupation": X,
    "MilitaryRank": X,
    "BranchOfService": X,
    "MedicalRecordLocator": X,
    "InsurancePlanIdentification": X,
    "PatientInsurancePlanCodeSequence": X,
    "ResponsiblePerson": X,
    "ResponsibleOrganization": X,
    "ReferencedPatientSequence": X,
    "ReferencedPatientAliasSequence": X,
    "ReferencedPatientPhotoSequence": X,
    "PatientComments": X,
    "AdditionalPatientHistory": X,
    "MedicalAlerts": X,
    "Allergies": X,
    "PatientState": X,
    "PreMedication": X,
    "SpecialNeeds": X,
    "ConfidentialityConstraintOnPatientDataDescription": X,
}

_VISIT: dict[str, Action] = {
    "AdmissionID": X,
    "IssuerOfAdmissionID": X,
    "IssuerOfAdmissionIDSequence": X,
    "AdmittingDate": X,
    "AdmittingTime": X,
    "AdmittingDiagnosesDescription": X,
    "AdmittingDiagnosesCodeSequence": X,
    "DischargeDiagnosisDescription": X,
    "CurrentPatientLocation": X,
    "PatientInstitutionResidence": X,
    "ScheduledPatientInstitutionResidence": X,
    "PatientTransportArrangements": X,
    "ServiceEpisodeID": X,
    "IssuerOfServiceEpisodeID": X,
    "IssuerOfServiceEpisodeIDSequence": X,
    "ServiceEpisodeDescription": X,
    "ReasonForVisit": X,
    "ReasonForVisitCodeSequence": X,
    "VisitComments": X,
}

_STUDY_AND_ORDER: dict[str, Action] = {
    "AccessionNumber": Z,
    "StudyID": Z,
    "StudyIDIssuer": X,
    "StudyDate": Z,
    "StudyTime": Z,
    "StudyDescription": X,
    "StudyComments": X,
    "ReasonForStudy": X,
    "ReferencedStudySequence": XZ,
    "RequestAttributesSequence": X,
    # ours: the table says X, but inside request sequences these are Type 1C/2; a dummy
    # protects the value as well as removal does.
    "RequestedProcedureID": XZD,
    "RequestedProcedureDescription": XZ,
    "RequestedProcedureComments": X,
    "RequestedProcedureLocation": X,
    "RequestedContrastAgent": X,
    "ReasonForTheRequestedProcedure": X,
    "ReasonForRequestedProcedureCodeSequence": X,
    "ReasonForTheImagingServiceRequest": X,
    "ImagingServiceRequestComments": X,
    "PlacerOrderNumberImagingServiceRequest": Z,
    "FillerOrderNumberImagingServiceRequest": Z,
    "OrderEnteredBy": X,
    "OrderEntererLocation": X,
    "OrderCallbackPhoneNumber": X,
    "OrderCallbackTelecomInformation": X,
    "RequestingService": X,
    "ScheduledProcedureStepID": XZD,  # ours: an order identifier, like Requested Procedure ID
    "ScheduledProcedureStepDescription": X,
    "ScheduledProcedureStepLocation": X,
    "ScheduledProcedureStepStartDate": X,
    "ScheduledProcedureStepStartTime": X,
    "ScheduledProcedureStepEndDate": X,
    "ScheduledProcedureStepEndTime": X,
    "ScheduledProcedureStepStartDateTime": X,
    "ScheduledProcedureStepExpirationDateTime": X,
    "ScheduledProcedureStepModificationDateTime": X,
    "ExpectedCompletionDateTime": X,
    "ProcedureStepCancellationDateTime": X,
    "ScheduledStudyLocation": X,
    "ScheduledStudyLocationAETitle": X,
    "ScheduledStationName": X,
    "ScheduledStationAETitle": X,
    "ScheduledStationNameCodeSequence": X,
    "ScheduledStationGeographicLocationCodeSequence": X,
    "PerformedProcedureStepID": X,
    "PerformedProcedureStepDescription": X,
    "PerformedProcedureStepStartDate": X,
    "PerformedProcedureStepStartTime": X,
    "PerformedProcedureStepStartDateTime": X,
    "PerformedProcedureStepEndDate": X,
    "PerformedProcedureStepEndTime": X,
    "PerformedProcedureStepEndDateTime": X,
    "CommentsOnThePerformedProcedureStep": X,
    "PerformedLocation": X,
    "PerformedStationName": X,
    "PerformedStationAETitle": X,
    "PerformedStationNameCodeSequence": X,
    "PerformedStationGeographicLocationCodeSequence": X,
    "ReferencedPerformedProcedureStepSequence": XZD,
}

_PEOPLE: dict[str, Action] = {
    "ReferringPhysicianName": Z,
    "ReferringPhysicianAddress": X,
    "ReferringPhysicianTelephoneNumbers": X,
    "ReferringPhysicianIdentificationSequence": X,
    "ConsultingPhysicianName": Z,
    "ConsultingPhysicianIdentificationSequence": X,
    "PhysiciansOfRecord": X,
    "PhysiciansOfRecordIdentificationSequence": X,
    "PerformingPhysicianName": X,
    "PerformingPhysicianIdentificationSequence": X,
    "NameOfPhysiciansReadingStudy": X,
    "PhysiciansReadingStudyIdentificationSequence": X,
    "RequestingPhysician": X,
    "ScheduledPerformingPhysicianName": X,
    "ScheduledPerformingPhysicianIdentificationSequence": X,
    "OperatorsName": XZD,
    "OperatorIdentificationSequence": XD,
    "HumanPerformerName": X,
    "HumanPerformerOrganization": X,
    "ActualHumanPerformersSequence": X,
    "ScheduledHumanPerformersSequence": X,
    "PersonName": D,
    "PersonAddress": X,
    "PersonTelephoneNumbers": X,
    "PersonTelecomInformation": X,
    "PersonIdentificationCodeSequence": D,
    "NamesOfIntendedRecipientsOfResults": X,
    "IntendedRecipientsOfResultsIdentificationSequence": X,
    "ContentCreatorName": ZD,
    "ContentCreatorIdentificationCodeSequence": X,
    "ReviewerName": XZ,
    "CameraOwnerName": X,
    "ParticipantSequence": X,
    "AuthorObserverSequence": X,
    "CustodialOrganizationSequence": X,
    "VerifyingObserverSequence": D,
    "VerifyingObserverName": D,
    "VerifyingOrganization": D,
    "VerifyingObserverIdentificationCodeSequence": Z,
    "DistributionName": X,
    "DistributionAddress": X,
}

_INSTITUTION: dict[str, Action] = {
    "InstitutionName": XZD,
    "InstitutionAddress": X,
    "InstitutionCodeSequence": XZD,
    "InstitutionalDepartmentName": X,
    "InstitutionalDepartmentTypeCodeSequence": X,
}

_EQUIPMENT: dict[str, Action] = {
    "StationName": XZD,
    "StationAETitle": XZD,  # ours: names the device on the network, like Station Name
    "DeviceSerialNumber": XZD,
    "DeviceDescription": X,
    "LongDeviceDescription": X,
    "DeviceLabel": D,
    "DeviceAlternateIdentifier": Z,
    "ManufacturerDeviceIdentifier": Z,
    "UniqueDeviceIdentifier": X,
    "UDISequence": X,
    "DetectorID": XD,
    "XRayDetectorID": D,
    "XRayDetectorLabel": X,
    "XRaySourceID": D,
    "GantryID": X,
    "GeneratorID": X,
    "PlateID": X,
    "CassetteID": X,
    "ModifyingDeviceID": X,
    "SourceManufacturer": X,
    "SourceSerialNumber": XZ,
    "TreatmentMachineName": XZ,  # ours: the table says X, but it is Type 2 in RT Beams
    "LensMake": X,
    "LensModel": X,
    "LensSerialNumber": X,
    "LensSpecification": X,
    "MakerNote": X,
    "DeviceSettingDescription": X,
}

_ACQUISITION_AND_IMAGE: dict[str, Action] = {
    "SeriesDate": XD,
    "SeriesTime": XD,
    "AcquisitionDate": XZ,
    "AcquisitionTime": XZ,
    "AcquisitionDateTime": XZD,
    "StartAcquisitionDateTime": XD,
    "EndAcquisitionDateTime": XD,
    "ContentDate": ZD,
    "ContentTime": ZD,
    "InstanceCoercionDateTime": X,
    "TimezoneOffsetFromUTC": X,
    "CurveDate": X,
    "CurveTime": X,
    "OverlayDate": X,
    "OverlayTime": X,
    "SeriesDescription": X,
    "ProtocolName": XD,
    "AcquisitionProtocolDescription": X,
    "AcquisitionDeviceProcessingDescription": XD,
    "AcquisitionComments": X,
    "AcquisitionContextSequence": XZ,
    "ContrastBolusAgent": ZD,
    "DerivationDescription": X,
    "ContributionDescription": X,
    "RespiratoryMotionCompensationTechniqueDescription": X,
    "MultienergyAcquisitionDescription": X,
    "DecompositionDescription": X,
    "ImageComments": X,
    "FrameComments": X,
    "ImagePresentationComments": X,
    "IdentifyingComments": X,
    "ModifiedImageDescription": X,
    "IconImageSequence": X,  # may show burned-in identification we cannot clean
    "ReferencedImageSequence": XZU,
    "SourceImageSequence": XZU,
    "GraphicAnnotationSequence": D,
    "UnformattedTextValue": D,  # ours: the text of a graphic annotation, like Text Value
    "TextString": X,
    "TextComments": X,
    "Arbitrary": X,
    "BarcodeValue": XZ,
    "LabelText": XZ,
    "FrameOriginTimestamp": D,
    "FlowIdentifier": D,
    "FlowIdentifierSequence": D,
    "SourceIdentifier": D,
    "ImpedanceMeasurementDateTime": D,
}

_STRUCTURED_REPORTS: dict[str, Action] = {
    "ContentSequence": D,
    # ours: the free text of TEXT content items (and of other name/value items) is where people
    # write names; it is Type 1C in a TEXT item, so it gets a dummy rather than removal.
    "TextValue": D,
    "ObservationDateTrial": X,
    "ObservationTimeTrial": X,
    "AddressTrial": X,
    "TelephoneNumberTrial": X,
    "CurrentObserverTrial": X,
    "VerbalSourceTrial": X,
    "VerbalSourceIdentifierCodeSequenceTrial": X,
    "Impressions": X,
    "InterpretationText": X,
    "InterpretationAuthor": X,
    "InterpretationRecorder": X,
    "InterpretationTranscriber": X,
    "InterpretationApproverSequence": X,
    "InterpretationDiagnosisDescription": X,
    "InterpretationIDIssuer": X,
    "PhysicianApprovingInterpretation": X,
    "ResultsComments": X,
    "ResultsIDIssuer": X,
    "ResultsDistributionListSequence": X,
    "TopicTitle": X,
    "TopicSubject": X,
    "TopicAuthor": X,
    "TopicKeywords": X,
}

_CLINICAL_TRIAL_AND_SPECIMEN: dict[str, Action] = {
    "ClinicalTrialSponsorName": D,
    "ClinicalTrialProtocolID": D,
    "ClinicalTrialProtocolName": Z,
    "ClinicalTrialSiteID": Z,
    "ClinicalTrialSiteName": Z,
    "ClinicalTrialSubjectID": D,
    "ClinicalTrialSubjectReadingID": D,
    "ClinicalTrialTimePointID": Z,
    "ClinicalTrialTimePointDescription": X,
    "ClinicalTrialCoordinatingCenterName": Z,
    "ClinicalTrialSeriesID": X,
    "ClinicalTrialSeriesDescription": X,
    "ClinicalTrialProtocolEthicsCommitteeName": D,
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber": X,
    "ContainerIdentifier": D,
    "ContainerDescription": X,
    "ContainerComponentID": X,
    "IssuerOfTheContainerIdentifierSequence": Z,
    "SpecimenIdentifier": D,
    "IssuerOfTheSpecimenIdentifierSequence": Z,
    "SpecimenAccessionNumber": X,
    "SpecimenShortDescription": X,
    "SpecimenDetailedDescription": X,
    "SpecimenPreparationSequence": Z,
    "SlideIdentifier": X,
}

_RADIOTHERAPY: dict[str, Action] = {
    "RTPlanLabel": D,
    "RTPlanName": X,
    "RTPlanDescription": X,
    "RTPlanDate": XD,
    "RTPlanTime": XD,
    "BeamDescription": X,
    "BolusDescription": X,
    "CompensatorDescription": X,
    "FixationDeviceDescription": X,
    "ShieldingDeviceDescription": X,
    "SetupTechniqueDescription": X,
    "FractionGroupDescription": X,
    "DoseReferenceDescription": X,
    "PrescriptionDescription": X,
    "PriorTreatmentDoseDescription": X,
    "ReasonForOmissionDescription": X,
    "EquipmentFrameOfReferenceDescription": X,
    "TreatmentDate": XD,
    "TreatmentTime": XD,
    "FirstTreatmentDate": XD,
    "MostRecentTreatmentDate": XD,
    "TreatmentSite": D,
    "TreatmentTechniqueNotes": Z,
    "TreatmentPositionGroupLabel": D,
    "TreatmentToleranceViolationDateTime": D,
    "TreatmentToleranceViolationDescription": D,
    "RecordedRTControlPointDateTime": D,
    "InterlockDateTime": D,
    "InterlockDescription": D,
    "InterlockOriginDescription": D,
    "OverrideDateTime": D,
    "SourceStartDateTime": D,
    "SourceEndDateTime": D,
    "RadiationDoseIdentificationLabel": D,
    "RadiationDoseInVivoMeasurementLabel": D,
    "RadiationGenerationModeLabel": D,
    "RadiationGenerationModeDescription": Z,
    "RTAccessoryDeviceSlotID": Z,
    "RTAccessoryHolderSlotID": Z,
    "RTPrescriptionLabel": D,
    "RTToleranceSetLabel": D,
    "RTTreatmentApproachLabel": XD,
    "RTPhysicianIntentNarrative": Z,
    "PrescriptionNotes": Z,
    "PrescriptionNotesSequence": Z,
    "FractionationNotes": Z,
    "ReasonForSuperseding": Z,
    "ConceptualVolumeDescription": Z,
    "ConceptualVolumeCombinationDescription": Z,
    "EntityLabel": D,
    "EntityLongLabel": D,
    "EntityName": X,
    "EntityDescription": X,
    "IntendedPhaseStartDate": XD,
    "IntendedPhaseEndDate": XD,
    "UserContentLabel": D,
    "UserContentLongLabel": D,
}

_SECURITY_AND_HISTORY: dict[str, Action] = {
    # These hold copies of original values or certificates of people.
    "OriginalAttributesSequence": X,
    "ModifiedAttributesSequence": X,
    "DigitalSignaturesSequence": X,
    "ReferencedDigitalSignatureSequence": X,
    "ReferencedSOPInstanceMACSequence": X,
    "MAC": X,
    "InstanceOriginStatus": X,
    "DataSetTrailingPadding": X,
}

_GPS: dict[str, Action] = {
    keyword: X
    for keyword in (
        "GPSVersionID",
        "GPSLatitudeRef",
        "GPSLatitude",
        "GPSLongitudeRef",
        "GPSLongitude",
        "GPSAltitudeRef",
        "GPSAltitude",
        "GPSTimeStamp",
        "GPSSatellites",
        "GPSStatus",
        "GPSMeasureMode",
        "GPSDOP",
        "GPSSpeedRef",
        "GPSSpeed",
        "GPSTrackRef",
        "GPSTrack",
        "GPSImgDirectionRef",
        "GPSImgDirection",
        "GPSMapDatum",
        "GPSDestLatitudeRef",
        "GPSDestLatitude",
        "GPSDestLongitudeRef",
        "GPSDestLongitude",
        "GPSDestBearingRef",
        "GPSDestBearing",
        "GPSDestDistanceRef",
        "GPSDestDistance",
        "GPSProcessingMethod",
        "GPSAreaInformation",
        "GPSDateStamp",
        "GPSDifferential",
    )
}

# Options: which attributes each one keeps (Table E.1-1 columns with "K"; "C" where we implement
# the cleaning by keeping the value and scrubbing the patient's identifiers out of it).

RETAIN_FULL_DATES: frozenset[str] = frozenset(
    {
        "StudyDate",
        "StudyTime",
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionDateTime",
        "StartAcquisitionDateTime",
        "EndAcquisitionDateTime",
        "ContentDate",
        "ContentTime",
        "InstanceCoercionDateTime",
        "TimezoneOffsetFromUTC",
        "CurveDate",
        "CurveTime",
        "OverlayDate",
        "OverlayTime",
        "AdmittingDate",
        "AdmittingTime",
        "LastMenstrualDate",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepEndDate",
        "ScheduledProcedureStepEndTime",
        "ScheduledProcedureStepStartDateTime",
        "ScheduledProcedureStepExpirationDateTime",
        "ScheduledProcedureStepModificationDateTime",
        "ExpectedCompletionDateTime",
        "ProcedureStepCancellationDateTime",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepStartDateTime",
        "PerformedProcedureStepEndDate",
        "PerformedProcedureStepEndTime",
        "PerformedProcedureStepEndDateTime",
        "ObservationDateTrial",
        "ObservationTimeTrial",
        "FrameOriginTimestamp",
        "ImpedanceMeasurementDateTime",
        "RTPlanDate",
        "RTPlanTime",
        "TreatmentDate",
        "TreatmentTime",
        "FirstTreatmentDate",
        "MostRecentTreatmentDate",
        "TreatmentToleranceViolationDateTime",
        "RecordedRTControlPointDateTime",
        "InterlockDateTime",
        "OverrideDateTime",
        "SourceStartDateTime",
        "SourceEndDateTime",
        "IntendedPhaseStartDate",
        "IntendedPhaseEndDate",
        "GPSDateStamp",
    }
)

RETAIN_DEVICE_IDENTITY: frozenset[str] = frozenset(
    {
        "StationName",
        "StationAETitle",
        "DeviceSerialNumber",
        "DeviceDescription",
        "DeviceLabel",
        "ManufacturerDeviceIdentifier",
        "UniqueDeviceIdentifier",
        "UDISequence",
        "DetectorID",
        "XRayDetectorID",
        "XRayDetectorLabel",
        "XRaySourceID",
        "GantryID",
        "GeneratorID",
        "PlateID",
        "CassetteID",
        "SourceManufacturer",
        "SourceSerialNumber",
        "TreatmentMachineName",
        "LensMake",
        "LensModel",
        "LensSerialNumber",
        "LensSpecification",
        "PerformedStationName",
        "PerformedStationAETitle",
        "PerformedStationNameCodeSequence",
        "PerformedStationGeographicLocationCodeSequence",
        "ScheduledStationName",
        "ScheduledStationAETitle",
        "ScheduledStationNameCodeSequence",
        "ScheduledStationGeographicLocationCodeSequence",
        "ScheduledProcedureStepLocation",
        "ScheduledStudyLocation",
        "ScheduledStudyLocationAETitle",
    }
)

RETAIN_PATIENT_CHARACTERISTICS: frozenset[str] = frozenset(
    {
        # Age, sex and size matter for reading (e.g. SUV in PET needs weight); the option's "C"
        # rows (allergies, state, pre-medication, special needs) stay removed: free text.
        "PatientAge",
        "PatientSex",
        "PatientSexNeutered",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "PregnancyStatus",
        "SmokingStatus",
    }
)

CLEAN_DESCRIPTORS: frozenset[str] = frozenset(
    {
        # Our subset of the Clean Descriptors option: descriptions of the procedure and the
        # acquisition, written by machines or from protocol catalogues. Comments, histories,
        # diagnoses and reasons stay removed: they are free text about the patient.
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "AcquisitionProtocolDescription",
        "AcquisitionDeviceProcessingDescription",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "ScheduledProcedureStepDescription",
        "DerivationDescription",
        "ContrastBolusAgent",
        "RespiratoryMotionCompensationTechniqueDescription",
        "MultienergyAcquisitionDescription",
        "DecompositionDescription",
        "ClinicalTrialSeriesDescription",
        "ClinicalTrialTimePointDescription",
        "RTPlanLabel",
        "RTPlanName",
        "RTPlanDescription",
        "BeamDescription",
        "FractionGroupDescription",
        "DoseReferenceDescription",
    }
)


# UI attributes naming a class, transfer syntax, coding scheme or mapping resource. Every other UI
# attribute is an instance reference and gets a new UID (the table's U rows and any it misses).
_CLASS_AND_SYNTAX_UIDS = (
    "SOPClassUID",
    "ReferencedSOPClassUID",
    "AffectedSOPClassUID",
    "RequestedSOPClassUID",
    "MediaStorageSOPClassUID",
    "ReferencedSOPClassUIDInFile",
    "ReferencedRelatedGeneralSOPClassUIDInFile",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
    "SOPClassesInStudy",
    "SOPClassesSupported",
    "PertinentSOPClassesInStudy",
    "PertinentSOPClassesInSeries",
    "RTVCommunicationSOPClassUID",
    "TransferSyntaxUID",
    "ReferencedTransferSyntaxUIDInFile",
    "StoredInstanceTransferSyntaxUID",
    "AvailableTransferSyntaxUID",
    "FlowTransferSyntaxUID",
    "MACCalculationTransferSyntaxUID",
    "EncryptedContentTransferSyntaxUID",
    "ImplementationClassUID",
    "CodingSchemeUID",
    "ContextUID",
    "MappingResourceUID",
)


def _to_tags(rows: Mapping[str, Action]) -> dict[int, Action]:
    table: dict[int, Action] = {}
    for keyword, action in rows.items():
        tag = tag_for_keyword(keyword)
        if tag is None:  # a typo here must fail at import, in tests, not silently keep PHI
            raise KeyError(f"unknown DICOM keyword in de-identification table: {keyword}")
        table[tag] = action
    return table


def _tag_set(keywords: Iterable[str]) -> frozenset[int]:
    return frozenset(_to_tags(dict.fromkeys(keywords, Action.KEEP)))


BASIC_PROFILE: Mapping[int, Action] = _to_tags(
    {
        **_PATIENT,
        **_VISIT,
        **_STUDY_AND_ORDER,
        **_PEOPLE,
        **_INSTITUTION,
        **_EQUIPMENT,
        **_ACQUISITION_AND_IMAGE,
        **_STRUCTURED_REPORTS,
        **_CLINICAL_TRIAL_AND_SPECIMEN,
        **_RADIOTHERAPY,
        **_SECURITY_AND_HISTORY,
        **_GPS,
    }
)
"""Tag -> Basic Profile action."""

KEEP_UID_TAGS = _tag_set(_CLASS_AND_SYNTAX_UIDS)
"""UI attributes never replaced: they name a class, syntax or coding scheme, not an instance."""
FULL_DATES_TAGS = _tag_set(RETAIN_FULL_DATES)
DEVICE_IDENTITY_TAGS = _tag_set(RETAIN_DEVICE_IDENTITY)
PATIENT_CHARACTERISTICS_TAGS = _tag_set(RETAIN_PATIENT_CHARACTERISTICS)
CLEAN_DESCRIPTORS_TAGS = _tag_set(CLEAN_DESCRIPTORS)
